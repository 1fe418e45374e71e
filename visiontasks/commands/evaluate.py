"""``visiontasks evaluate detection|keypoints|segmentation|classification``: score predictions against ground
truth, without a model (see docs/evaluate.md for the formats and what every number means).

- ``detection --gt ROOT --pred results.json|FOLDER [--format coco|voc|yolo] [--split NAME] [--voc07]``:
  COCO mAP (torchmetrics on faster_coco_eval), VOC AP at IoU 0.5, PR curves, confusion matrix;
- ``keypoints --gt person_keypoints.json --pred results.json``: COCO keypoint AP by OKS (faster_coco_eval);
- ``segmentation --gt MASKS --pred MASKS``: mIoU, per-class IoU, pixel/mean class accuracy;
- ``classification --gt FOLDER|CSV --pred CSV``: top-1/top-5, per-class accuracy.

Each prints a table and writes ``metrics.json``, ``metrics.txt`` and figures to ``--output``
(default: ``evaluate_<task>`` next to the predictions).
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from visiontasks.errors import InvalidInputError, MissingFileError, UserInputError
from visiontasks.outputs.classification_files import read_classification_predictions, read_csv
from visiontasks.outputs.detection_files import (
    check_keypoint_count,
    read_coco_keypoint_results,
    read_coco_results,
    read_yolo_predictions,
)
from visiontasks.outputs.report import fmt, nanmean, plot_matrix, write_matrix_csv, write_metrics

TASKS = ("detection", "keypoints", "segmentation", "classification")


# -- shared writing (the helpers live in outputs/report.py: a detection test writes the same report) --
def _write(out: Path, metrics: dict[str, Any], table: str) -> None:
    write_metrics(out, metrics, table)
    print(table)
    print(f"written to {out}")


def _need(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{what} {path} does not exist")
    return path


@contextlib.contextmanager
def _as_user_errors() -> Iterator[None]:
    """The readers' plain ``FileNotFoundError``/``ValueError`` (their messages name the file) are the
    user's data here: shown as one line like the errors of :mod:`visiontasks.errors`."""
    try:
        yield
    except UserInputError:
        raise
    except FileNotFoundError as err:
        raise MissingFileError(str(err)) from err
    except ValueError as err:
        raise InvalidInputError(str(err)) from err


def _names_arg(value: str | None) -> list[str] | None:
    """``--names``: a file with one name per line, or a comma-separated list."""
    if not value:
        return None
    path = Path(value)
    if path.is_file():
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    else:
        names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise InvalidInputError(f"--names {value}: no class names found")
    return names


# -- detection -----------------------------------------------------------------------------------------
def _read_gt_detection(args: argparse.Namespace):  # noqa: ANN202 - DetectionSplit
    from visiontasks.data.detection import DETECTION_READERS  # the package registers every reader

    root = _need(args.gt, "ground truth")
    reader = DETECTION_READERS.get(args.format)(root, {"val": args.split}, _names_arg(args.names))
    with _as_user_errors():
        names, _ = reader.class_table()
        split = reader.samples(args.split, f"{args.format} {args.split} ({root})", names)
    if not split.records:
        raise InvalidInputError(f"ground truth {root} (split {args.split!r}) has no images")
    return split


def evaluate_detection(args: argparse.Namespace) -> dict[str, Any]:
    from visiontasks.metrics.detection_diagnostics import ImageBoxes
    from visiontasks.outputs.report import write_detection_report

    split = _read_gt_detection(args)
    pred_path = _need(args.pred, "predictions")
    preds = read_yolo_predictions(pred_path, split) if pred_path.is_dir() else read_coco_results(pred_path, split)
    gts, dets = [], []
    for r in split.records:
        gts.append(ImageBoxes(np.asarray(r.boxes, np.float64).reshape(-1, 4), np.asarray(r.labels, np.int64)))
        p = preds.get(r.image_id, [])
        dets.append(ImageBoxes(np.array([b for b, _, _ in p], np.float64).reshape(-1, 4),
                               np.array([c for _, _, c in p], np.int64), np.array([s for _, s, _ in p], np.float64)))
    out = _output(args, "detection")
    metrics, table = write_detection_report(out, gts, dets, list(split.class_names), args.conf, args.voc07)
    print(table)
    print(f"written to {out}")
    return metrics


# -- keypoints -------------------------------------------------------------------------------------------
def read_keypoint_gt(path: Path) -> tuple[dict[str, Any], list[float], list[str]]:
    """A COCO person-keypoints JSON -> the dict COCO's evaluation takes (each annotation with
    ``area``: its own, else its box's, as no segmentation area is known; ``num_keypoints`` counted
    when absent), the OKS sigmas (the keypoint category's ``sigmas`` if it gives them, else COCO's 17
    person sigmas for 17 keypoints, else ``1 / P`` each) and the keypoint names."""
    from visiontasks.ops.keypoints import default_sigmas

    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InvalidInputError(f"ground truth {path}: not a COCO JSON ({err})") from None
    lists = ("images", "annotations", "categories")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in lists):
        raise InvalidInputError(f"ground truth {path}: a COCO person-keypoints JSON needs the lists images, "
                                "annotations and categories")
    named = [c for c in data["categories"] if isinstance(c, dict) and c.get("keypoints")]
    lengths = {len(a["keypoints"]) for a in data["annotations"] if isinstance(a, dict) and "keypoints" in a}
    p = len(named[0]["keypoints"]) if named else (lengths.pop() // 3 if len(lengths) == 1 else 0)
    if p == 0:
        raise InvalidInputError(f"ground truth {path}: no category names its keypoints and the annotations "
                                "carry none; it is not a keypoints file (COCO: person_keypoints_<split>.json)")
    annotations = []
    for n, a in enumerate(data["annotations"]):
        try:
            kp, box = [float(v) for v in a["keypoints"]], [float(v) for v in a["bbox"]]
            if len(box) != 4:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise InvalidInputError(f"ground truth {path}, annotation {n}: needs keypoints [x, y, v, ...] and "
                                    "bbox [x, y, w, h]") from None
        check_keypoint_count(kp, p, f"ground truth {path}, annotation {n}", f"expected {3 * p} ({p} keypoints, x, y, v each)")
        annotations.append({**a, "id": a.get("id", n + 1), "keypoints": kp, "bbox": box,
                            "iscrowd": a.get("iscrowd", 0), "area": float(a.get("area") or box[2] * box[3]),
                            "num_keypoints": a.get("num_keypoints", sum(v > 0 for v in kp[2::3]))})
    sigmas = named[0].get("sigmas") if named else None
    if sigmas is not None and len(sigmas) != p:
        raise InvalidInputError(f"ground truth {path}: the category's sigmas has {len(sigmas)} values for "
                                f"{p} keypoints")
    names = [str(k) for k in named[0]["keypoints"]] if named else [str(i) for i in range(p)]
    gt = {**data, "annotations": annotations}
    return gt, [float(v) for v in sigmas] if sigmas is not None else default_sigmas(p), names


def evaluate_keypoints(args: argparse.Namespace) -> dict[str, Any]:
    from visiontasks.metrics.keypoints import coco_keypoint_ap

    gt_path = _need(args.gt, "ground truth")
    gt, sigmas, names = read_keypoint_gt(gt_path)
    image_ids = {int(i["id"]) for i in gt["images"]}
    category_ids = {int(c["id"]) for c in gt["categories"]}
    results = read_coco_keypoint_results(_need(args.pred, "predictions"), image_ids, category_ids, len(names))
    scores = coco_keypoint_ap(gt, results, sigmas)
    metrics: dict[str, Any] = {"images": len(image_ids), "detections": len(results), **scores,
                               "keypoints": names, "sigmas": sigmas}
    lines = [f"keypoints: {len(image_ids)} images, {len(results)} detections, {len(names)} keypoints (OKS)"]
    lines += [f"  {key:<10} {fmt(scores[key])}" for key in ("kp_map", "kp_map_50", "kp_map_75", "kp_mar")]
    _write(_output(args, "keypoints"), metrics, "\n".join(lines))
    return metrics


# -- segmentation ----------------------------------------------------------------------------------------
def _mask_files(folder: Path, what: str) -> dict[str, Path]:
    from visiontasks.data.io import list_image_files

    files = list_image_files(folder, recursive=True) if _need(folder, what).is_dir() else [folder]
    if not files:
        raise InvalidInputError(f"{what} {folder}: no mask images found")
    out: dict[str, Path] = {}
    for f in files:
        if f.stem in out:
            raise InvalidInputError(f"{what} masks {out[f.stem]} and {f} share the stem {f.stem!r}; masks are paired by stem")
        out[f.stem] = f
    return out


def _raw_max(path: Path, ignore_index: int) -> int:
    from PIL import Image

    with Image.open(path) as img:
        values = np.unique(np.asarray(img.convert("L") if img.mode in ("RGB", "RGBA") else img))
    values = values[values != ignore_index]
    return int(values.max()) if values.size else -1


def evaluate_segmentation(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from visiontasks.data.segmentation.masks import MaskDecoder
    from visiontasks.metrics.segmentation import SegmentationMetrics, format_iou_table

    gt = _mask_files(Path(args.gt), "ground truth")
    pred = _mask_files(Path(args.pred), "predictions")
    pairs = []
    for stem, g in gt.items():
        p = pred.get(stem) or pred.get(f"{stem}_mask")  # `visiontasks predict` writes <stem>_mask.png
        if p is None:
            raise MissingFileError(f"ground truth mask {g} has no prediction {stem}.png (or {stem}_mask.png) in {args.pred}")
        pairs.append((g, p))
    remap = None
    if args.dataset_yaml:
        from visiontasks.data.segmentation.readers import read_dataset_yaml

        with _as_user_errors():
            classes = read_dataset_yaml(_need(args.dataset_yaml, "dataset YAML"))["classes"]
        kept = {raw: n for raw, n in sorted(classes.items()) if raw != args.ignore_index}
        names = list(kept.values())
        remap = {raw: i for i, raw in enumerate(kept)}  # the ground truth's ids -> 0..K-1
    else:
        names = _names_arg(args.names)
    if names is None:
        k = 1 + max(max(_raw_max(g, args.ignore_index), _raw_max(p, args.ignore_index)) for g, p in pairs)
        names = [str(i) for i in range(max(k, 1))]
    k = len(names)
    gt_decoder = MaskDecoder(k, args.ignore_index, remap=remap)
    pred_decoder = MaskDecoder(k, args.ignore_index)
    metric = SegmentationMetrics(k, ignore_index=args.ignore_index, class_names=names)
    for g, p in pairs:
        target, output = gt_decoder.read(g), pred_decoder.read(p)
        if target.shape != output.shape:
            raise InvalidInputError(
                f"prediction {p} is {output.shape[1]}x{output.shape[0]} but ground truth {g} is "
                f"{target.shape[1]}x{target.shape[0]} (W x H); predictions must be at the mask's size"
            )
        if ((output == args.ignore_index) & (target != args.ignore_index)).any():
            raise InvalidInputError(f"prediction {p} has the ignore value {args.ignore_index} where {g} has a class")
        output = np.where(output == args.ignore_index, 0, output)  # only where the target is ignored
        metric.update(torch.from_numpy(output)[None], torch.from_numpy(target)[None])
    scores = metric.compute()
    cm = scores["confmat"].numpy()
    metrics = {
        "mIoU": float(scores["mIoU"]), "pixel_acc": float(scores["pixel_acc"]),
        "mean_class_acc": float(scores["mean_class_acc"]), "images": len(pairs),
        "IoU_per_class": dict(zip(names, scores["iou"].tolist())),
        "acc_per_class": dict(zip(names, scores["class_acc"].tolist())),
        "confusion_matrix": {"classes": names, "matrix": cm.tolist()},
    }
    out = _output(args, "segmentation")
    _write(out, metrics, f"segmentation: {len(pairs)} masks\n" + format_iou_table(names, scores))
    write_matrix_csv(out / "confusion_matrix.csv", cm, names, names)
    plot_matrix(out / "confusion_matrix.png", cm, names, names, "pixels")
    return metrics


# -- classification ----------------------------------------------------------------------------------------
def _gt_classification(path: Path) -> tuple[dict[str, str], list[str]]:
    """``{id: class name}`` and the class names (a folder: its class sub-folders, sorted)."""
    if path.is_dir():
        from visiontasks.data.classification import scan_image_folder

        try:
            paths, labels, classes = scan_image_folder(path)
        except ValueError as err:
            raise InvalidInputError(str(err)) from None
        return {str(p): classes[i] for p, i in zip(paths, labels)}, classes
    cols, rows = read_csv(path, "ground truth")
    label_col = next((c for c in ("label", "name", "class") if c in cols), None)
    if "id" not in cols or label_col is None:
        raise InvalidInputError(f"ground truth {path}: needs the columns id and label (class name), has {cols}")
    gt = {r["id"]: r[label_col] for r in rows}
    return gt, sorted(set(gt.values()))


def evaluate_classification(args: argparse.Namespace) -> dict[str, Any]:
    gt, gt_names = _gt_classification(_need(args.gt, "ground truth"))
    cols, rows, prob_cols = read_classification_predictions(args.pred)
    names = [c[2:] for c in prob_cols] if prob_cols else sorted(set(gt_names) | {r["name"] for r in rows})
    unknown = sorted(set(gt.values()) - set(names))
    if unknown:
        raise InvalidInputError(f"ground truth {args.gt}: classes {unknown[:5]} are not among the predicted classes {names[:10]}")
    index = {n: i for i, n in enumerate(names)}
    # pair by id, else by resolved path, else by file stem
    keys: dict[str, str | None] = {}
    for key in gt:
        for alias in (key, str(Path(key).resolve()), Path(key).stem):
            keys[alias] = key if keys.get(alias, key) == key else None  # None: two images share it
    truth, ranks, top1 = [], [], []
    for n, r in enumerate(rows, 2):
        key = keys.get(r["id"]) or keys.get(str(Path(r["id"]).resolve())) or keys.get(Path(r["id"]).stem)
        if key is None and Path(r["id"]).stem in keys:
            raise InvalidInputError(
                f"predictions {args.pred}, line {n}: id {r['id']!r} matches several ground-truth images by "
                "file stem; give the path as the id"
            )
        if key is None:
            raise InvalidInputError(f"predictions {args.pred}, line {n}: id {r['id']!r} is not in the ground truth {args.gt}")
        t = index[gt[key]]
        try:
            probs = np.array([float(r[c]) for c in prob_cols]) if prob_cols else None
        except ValueError:
            raise InvalidInputError(f"predictions {args.pred}, line {n}: a p_<class> value is not a number") from None
        name = r.get("name")
        if name not in index:
            if probs is None:
                raise InvalidInputError(f"predictions {args.pred}, line {n}: class {name!r} is unknown")
            name = names[int(probs.argmax())]
        truth.append(t)
        top1.append(index[name])
        ranks.append(int((probs > probs[t]).sum()) if probs is not None else None)
    missing = len(gt) - len(truth)
    if not truth:
        raise InvalidInputError(f"predictions {args.pred}: no rows")
    k = len(names)
    truth_a, top1_a = np.array(truth), np.array(top1)
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (truth_a, top1_a), 1)
    support = cm.sum(1)
    per_class = [float(cm[i, i] / support[i]) if support[i] else float("nan") for i in range(k)]
    metrics: dict[str, Any] = {"images": len(truth), "top1": float((truth_a == top1_a).mean())}
    if prob_cols:
        metrics[f"top{min(5, k)}"] = float((np.array(ranks) < min(5, k)).mean())
    metrics["mean_class_acc"] = nanmean(per_class)
    metrics["acc_per_class"] = dict(zip(names, per_class))
    metrics["confusion_matrix"] = {"classes": names, "matrix": cm.tolist()}
    if missing:
        metrics["ground_truth_without_prediction"] = missing
    lines = [f"classification: {len(truth)} images" + (f" ({missing} ground-truth images have no prediction)" if missing else "")]
    lines += [f"  {key:<15} {fmt(v)}" for key, v in metrics.items() if key.startswith("top") or key == "mean_class_acc"]
    width = max([5, *(len(n) for n in names)])
    lines += ["", f"{'class':<{width}}  {'acc':>7}  {'images':>7}"]
    lines += [f"{n:<{width}}  {fmt(a):>7}  {int(s):>7d}" for n, a, s in zip(names, per_class, support)]
    out = _output(args, "classification")
    _write(out, metrics, "\n".join(lines))
    write_matrix_csv(out / "confusion_matrix.csv", cm, names, names)
    plot_matrix(out / "confusion_matrix.png", cm, names, names, "images")
    return metrics


# -- command line ----------------------------------------------------------------------------------------
def _output(args: argparse.Namespace, task: str) -> Path:
    return Path(args.output) if args.output else Path(args.pred).parent / f"evaluate_{task}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visiontasks evaluate", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="task", required=True)
    det = sub.add_parser("detection", help="COCO mAP, VOC AP, PR curves, confusion matrix")
    det.add_argument("--gt", required=True, help="the dataset root (COCO/VOC folder; YOLO: the YAML or its folder)")
    det.add_argument("--pred", required=True, help="COCO results JSON, or a folder of YOLO txt 'class cx cy w h score'")
    det.add_argument("--format", default="coco", help="the ground truth's format: coco, voc or yolo")
    det.add_argument("--split", default="val", help="the split (COCO: instances_<split>.json; VOC: list name; YOLO: YAML key)")
    det.add_argument("--names", default=None, help="VOC: the class list (file, or comma-separated)")
    det.add_argument("--voc07", action="store_true", help="also VOC2007's 11-point AP")
    det.add_argument("--conf", type=float, default=0.25, help="score threshold of the confusion matrix")
    kp = sub.add_parser("keypoints", help="COCO keypoint AP by OKS")
    kp.add_argument("--gt", required=True, help="a COCO person-keypoints JSON (person_keypoints_<split>.json)")
    kp.add_argument("--pred", required=True, help="COCO keypoint results JSON (image_id, category_id, keypoints, score)")
    seg = sub.add_parser("segmentation", help="mIoU, per-class IoU, pixel/mean class accuracy")
    seg.add_argument("--gt", required=True, help="a folder (or file) of index masks")
    seg.add_argument("--pred", required=True, help="a folder (or file) of predicted index masks, paired by stem")
    names = seg.add_mutually_exclusive_group()
    names.add_argument("--names", default=None, help="class names: a file (one per line) or a comma-separated list")
    names.add_argument("--dataset-yaml", "--dataset_yaml", dest="dataset_yaml", default=None,
                       help="the classes of a dataset YAML (its ids in the ground truth are remapped to 0..K-1)")
    seg.add_argument("--ignore-index", "--ignore_index", dest="ignore_index", type=int, default=255)
    cls = sub.add_parser("classification", help="top-1/top-5, per-class accuracy, confusion matrix")
    cls.add_argument("--gt", required=True, help="an image folder (<class>/<image>) or a CSV with id,label")
    cls.add_argument("--pred", required=True, help="a CSV with id,name[,p_<class>...] (as predictions.csv)")
    for p in (det, kp, seg, cls):
        p.add_argument("--output", default=None, help="folder for the results (default: evaluate_<task> next to --pred)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    run = {"detection": evaluate_detection, "keypoints": evaluate_keypoints, "segmentation": evaluate_segmentation,
           "classification": evaluate_classification}[args.task]
    run(args)
    return 0
