"""``visiontasks evaluate detection|segmentation|classification``: score predictions against ground
truth, without a model (see docs/evaluate.md for the formats and what every number means).

- ``detection --gt ROOT --pred results.json|FOLDER [--format coco|voc|yolo] [--split NAME] [--voc07]``:
  COCO mAP (torchmetrics on faster_coco_eval), VOC AP at IoU 0.5, PR curves, confusion matrix;
- ``segmentation --gt MASKS --pred MASKS``: mIoU, per-class IoU, pixel/mean class accuracy;
- ``classification --gt FOLDER|CSV --pred CSV``: top-1/top-5, per-class accuracy.

Each prints a table and writes ``metrics.json``, ``metrics.txt`` and figures to ``--output``
(default: ``evaluate_<task>`` next to the predictions).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from visiontasks.errors import InvalidInputError, MissingFileError, UserInputError

TASKS = ("detection", "segmentation", "classification")


# -- shared writing ----------------------------------------------------------------------------------
def _clean(value: Any) -> Any:
    """JSON-safe: NaN -> None, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _nanmean(values: Sequence[float]) -> float:
    """Mean of the values that are not NaN (NaN when there are none)."""
    kept = [v for v in values if v == v]
    return float(np.mean(kept)) if kept else float("nan")


def _fmt(v: float | None) -> str:
    return "-" if v is None or v != v else f"{v:.4f}"


def _write(out: Path, metrics: dict[str, Any], table: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(_clean(metrics), indent=1) + "\n")
    (out / "metrics.txt").write_text(table + "\n")
    print(table)
    print(f"written to {out}")


def _write_matrix_csv(path: Path, matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ground truth \\ predicted", *cols])
        for name, row in zip(rows, matrix.tolist()):
            w.writerow([name, *row])


def _plot_matrix(path: Path, matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, m = matrix.shape
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * m + 2), max(4, 0.6 * n + 1.5)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(m), [str(c) for c in cols], rotation=45, ha="right")
    ax.set_yticks(range(n), [str(r) for r in rows])
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    if n * m <= 900:
        top = matrix.max() if matrix.size else 0
        for i in range(n):
            for j in range(m):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if top and matrix[i, j] > top / 2 else "black")
    ax.set_title(title)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


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


def _read_pred_coco(path: Path, split) -> dict[int, list[tuple[list[float], float, int]]]:  # noqa: ANN001
    """COCO results JSON -> ``{image_id: [(xyxy, score, label)]}``."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InvalidInputError(f"predictions {path}: not a COCO results JSON ({err})") from None
    if isinstance(data, dict) and "annotations" in data:
        data = data["annotations"]
    if not isinstance(data, list):
        raise InvalidInputError(f"predictions {path}: expected a list of {{image_id, category_id, bbox, score}}")
    label_of = {cid: i for i, cid in enumerate(split.category_ids)}
    ids = {r.image_id for r in split.records}
    out: dict[int, list] = {}
    for n, d in enumerate(data):
        try:
            image_id, cat, (x, y, w, h), score = int(d["image_id"]), int(d["category_id"]), d["bbox"], float(d["score"])
            x, y, w, h = float(x), float(y), float(w), float(h)
        except (KeyError, TypeError, ValueError):
            raise InvalidInputError(
                f"predictions {path}, entry {n}: needs image_id, category_id, bbox [x, y, w, h] and score"
            ) from None
        if image_id not in ids:
            raise InvalidInputError(
                f"predictions {path}, entry {n}: image_id {image_id} is not in the ground truth; the ids must "
                "be the ground truth's (COCO: the file's image ids; VOC/YOLO: the image's index in the split)"
            )
        if cat not in label_of:
            raise InvalidInputError(
                f"predictions {path}, entry {n}: category_id {cat} is not one of the ground truth's "
                f"{split.category_ids}"
            )
        if not all(map(math.isfinite, (x, y, w, h, score))):
            raise InvalidInputError(f"predictions {path}, entry {n}: bbox or score is not a finite number")
        out.setdefault(image_id, []).append(([x, y, x + w, y + h], score, label_of[cat]))
    return out


def _read_pred_yolo(folder: Path, split) -> dict[int, list[tuple[list[float], float, int]]]:  # noqa: ANN001
    """A folder of ``<image stem>.txt`` with ``class cx cy w h score`` (normalised) per line."""
    from visiontasks.data.detection.common import image_size_of

    by_stem: dict[str, Any] = {}
    for r in split.records:
        if Path(r.path).stem in by_stem:
            raise InvalidInputError(
                f"ground truth images {by_stem[Path(r.path).stem].path} and {r.path} share the stem "
                f"{Path(r.path).stem!r}; YOLO predictions are paired by stem, use COCO results JSON instead"
            )
        by_stem[Path(r.path).stem] = r
    out: dict[int, list] = {}
    k = len(split.class_names)
    for txt in sorted(folder.glob("*.txt")):
        rec = by_stem.get(txt.stem)
        if rec is None:
            continue
        h, w = rec.size or image_size_of(Path(rec.path))
        for line_no, line in enumerate(txt.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                cls, cx, cy, bw, bh, score = int(parts[0]), *map(float, parts[1:6])
                if len(parts) != 6:
                    raise ValueError
            except (ValueError, IndexError):
                raise InvalidInputError(
                    f"predictions {txt}, line {line_no}: expected 'class cx cy w h score' (normalised)"
                ) from None
            if not 0 <= cls < k or not all(map(math.isfinite, (cx, cy, bw, bh, score))):
                raise InvalidInputError(
                    f"predictions {txt}, line {line_no}: class {cls} outside 0..{k - 1} or a value is not finite"
                )
            box = [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h]
            out.setdefault(rec.image_id, []).append((box, score, cls))
    return out


def evaluate_detection(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from visiontasks.metrics.detection import make_map_metric
    from visiontasks.metrics.detection_diagnostics import (
        ImageBoxes,
        detection_confusion_matrix,
        voc_results,
    )

    split = _read_gt_detection(args)
    pred_path = _need(args.pred, "predictions")
    preds = _read_pred_yolo(pred_path, split) if pred_path.is_dir() else _read_pred_coco(pred_path, split)
    names = list(split.class_names)
    k = len(names)
    gts, dets = [], []
    for r in split.records:
        gts.append(ImageBoxes(np.asarray(r.boxes, np.float64).reshape(-1, 4), np.asarray(r.labels, np.int64)))
        p = preds.get(r.image_id, [])
        dets.append(ImageBoxes(np.array([b for b, _, _ in p], np.float64).reshape(-1, 4),
                               np.array([c for _, _, c in p], np.int64), np.array([s for _, s, _ in p], np.float64)))

    metric = make_map_metric(class_metrics=True)
    metric.update(
        [{"boxes": torch.as_tensor(d.boxes, dtype=torch.float64), "scores": torch.as_tensor(d.scores, dtype=torch.float64),
          "labels": torch.as_tensor(d.labels)} for d in dets],
        [{"boxes": torch.as_tensor(g.boxes, dtype=torch.float64), "labels": torch.as_tensor(g.labels)} for g in gts],
    )
    res = metric.compute()
    coco = {key: float(res[src]) for key, src in (
        ("mAP", "map"), ("mAP50", "map_50"), ("mAP75", "map_75"), ("mAR1", "mar_1"), ("mAR10", "mar_10"),
        ("mAR100", "mar_100"), ("AP_small", "map_small"), ("AP_medium", "map_medium"), ("AP_large", "map_large"))}
    coco = {key: (v if v >= 0 else float("nan")) for key, v in coco.items()}  # COCO's -1: no data
    coco_ap = {n: float("nan") for n in names}
    for c, ap in zip(res["classes"].reshape(-1).tolist(), res["map_per_class"].reshape(-1).tolist()):
        if 0 <= c < k and ap >= 0:
            coco_ap[names[c]] = float(ap)

    curves, voc_ap, voc07_ap = voc_results(gts, dets, k, iou_thresh=0.5)
    cm = detection_confusion_matrix(gts, dets, k, iou_thresh=0.5, score_thresh=args.conf)
    metrics: dict[str, Any] = {
        "coco": coco, "coco_AP_per_class": coco_ap,
        "voc_AP50_per_class": dict(zip(names, voc_ap)), "voc_mAP50": _nanmean(voc_ap),
        "images": len(gts), "ground_truth_boxes": int(sum(len(g.labels) for g in gts)),
        "detections": int(sum(len(d.labels) for d in dets)),
        "confusion_matrix": {"rows": [*names, "background"], "columns": [*names, "missed"],
                             "score_thresh": args.conf, "matrix": cm.tolist()},
    }
    if args.voc07:
        metrics["voc07_AP50_per_class"] = dict(zip(names, voc07_ap))
        metrics["voc07_mAP50"] = _nanmean(voc07_ap)

    lines = [f"detection: {len(gts)} images, {metrics['ground_truth_boxes']} boxes, {metrics['detections']} detections"]
    lines += [f"  COCO {key:<10} {_fmt(v)}" for key, v in coco.items()]
    lines.append(f"  VOC mAP@0.5 (all points) {_fmt(metrics['voc_mAP50'])}"
                 + (f"   VOC07 11-point {_fmt(metrics['voc07_mAP50'])}" if args.voc07 else ""))
    width = max([5, *(len(n) for n in names)])
    head = f"{'class':<{width}}  {'COCO AP':>8}  {'VOC AP50':>8}" + (f"  {'VOC07':>8}" if args.voc07 else "") + f"  {'gt':>6}"
    lines += ["", head, "-" * len(head)]
    for c, n in enumerate(names):
        lines.append(f"{n:<{width}}  {_fmt(coco_ap[n]):>8}  {_fmt(voc_ap[c]):>8}"
                     + (f"  {_fmt(voc07_ap[c]):>8}" if args.voc07 else "") + f"  {curves[c].num_gt:>6d}")
    out = _output(args, "detection")
    _write(out, metrics, "\n".join(lines))
    _write_matrix_csv(out / "confusion_matrix.csv", cm, [*names, "background"], [*names, "missed"])
    _plot_matrix(out / "confusion_matrix.png", cm, [*names, "background"], [*names, "missed"],
                 f"detections (score >= {args.conf}) at IoU 0.5")
    _plot_pr(out / "pr_curves", names, curves, voc_ap)
    return metrics


def _plot_pr(folder: Path, names: list[str], curves: list, aps: list[float]) -> None:  # noqa: ANN001
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    for name, pr, ap in zip(names, curves, aps):
        fig, ax = plt.subplots(figsize=(4.5, 4))
        if pr.num_gt and len(pr.recall):
            # raw precision at each detection, and the monotone envelope whose area is the AP
            envelope = np.maximum.accumulate(pr.precision[::-1])[::-1]
            ax.plot(pr.recall, pr.precision, color="0.6", lw=1, label="precision")
            ax.plot(pr.recall, envelope, drawstyle="steps-pre", lw=1.5, label="interpolated (AP area)")
            ax.legend(loc="lower left", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"{name}: AP@0.5 {_fmt(ap)} ({pr.num_gt} objects)")
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
        fig.savefig(folder / f"{safe}.png", dpi=100, bbox_inches="tight")
        plt.close(fig)


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
    _write_matrix_csv(out / "confusion_matrix.csv", cm, names, names)
    _plot_matrix(out / "confusion_matrix.png", cm, names, names, "pixels")
    return metrics


# -- classification ----------------------------------------------------------------------------------------
def _read_csv(path: Path, what: str) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with open(_need(path, what), newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except (UnicodeDecodeError, csv.Error) as err:
        raise InvalidInputError(f"{what} {path}: not a readable CSV ({err})") from None


def _gt_classification(path: Path) -> tuple[dict[str, str], list[str]]:
    """``{id: class name}`` and the class names (a folder: its class sub-folders, sorted)."""
    if path.is_dir():
        from visiontasks.data.classification import scan_image_folder

        try:
            paths, labels, classes = scan_image_folder(path)
        except ValueError as err:
            raise InvalidInputError(str(err)) from None
        return {str(p): classes[i] for p, i in zip(paths, labels)}, classes
    cols, rows = _read_csv(path, "ground truth")
    label_col = next((c for c in ("label", "name", "class") if c in cols), None)
    if "id" not in cols or label_col is None:
        raise InvalidInputError(f"ground truth {path}: needs the columns id and label (class name), has {cols}")
    gt = {r["id"]: r[label_col] for r in rows}
    return gt, sorted(set(gt.values()))


def evaluate_classification(args: argparse.Namespace) -> dict[str, Any]:
    gt, gt_names = _gt_classification(_need(args.gt, "ground truth"))
    cols, rows = _read_csv(Path(args.pred), "predictions")
    prob_cols = [c for c in cols if c.startswith("p_")]
    if "id" not in cols or ("name" not in cols and not prob_cols):
        raise InvalidInputError(f"predictions {args.pred}: needs the columns id and name (or p_<class>), has {cols}")
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
    metrics["mean_class_acc"] = _nanmean(per_class)
    metrics["acc_per_class"] = dict(zip(names, per_class))
    metrics["confusion_matrix"] = {"classes": names, "matrix": cm.tolist()}
    if missing:
        metrics["ground_truth_without_prediction"] = missing
    lines = [f"classification: {len(truth)} images" + (f" ({missing} ground-truth images have no prediction)" if missing else "")]
    lines += [f"  {key:<15} {_fmt(v)}" for key, v in metrics.items() if key.startswith("top") or key == "mean_class_acc"]
    width = max([5, *(len(n) for n in names)])
    lines += ["", f"{'class':<{width}}  {'acc':>7}  {'images':>7}"]
    lines += [f"{n:<{width}}  {_fmt(a):>7}  {int(s):>7d}" for n, a, s in zip(names, per_class, support)]
    out = _output(args, "classification")
    _write(out, metrics, "\n".join(lines))
    _write_matrix_csv(out / "confusion_matrix.csv", cm, names, names)
    _plot_matrix(out / "confusion_matrix.png", cm, names, names, "images")
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
    for p in (det, seg, cls):
        p.add_argument("--output", default=None, help="folder for the results (default: evaluate_<task> next to --pred)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    run = {"detection": evaluate_detection, "segmentation": evaluate_segmentation,
           "classification": evaluate_classification}[args.task]
    run(args)
    return 0
