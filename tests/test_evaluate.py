"""`visiontasks evaluate`: COCO numbers against pycocotools, VOC AP against the devkit's formula,
the detection confusion matrix, segmentation and classification on hand-computed cases, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visiontasks.cli import main

NAMES = ["cat", "dog"]
CAT_IDS = [1, 3]  # COCO category ids with a gap: labels are 0, 1


# -- the classic reference (Pascal VOC devkit / py-faster-rcnn voc_eval), written out as published --------
def ref_voc_ap(rec, prec, use_07_metric=False):
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            if np.sum(rec >= t) == 0:
                p = 0
            else:
                p = np.max(prec[rec >= t])
            ap = ap + p / 11.0
    else:
        mrec = np.concatenate(([0.0], rec, [1.0]))
        mpre = np.concatenate(([0.0], prec, [0.0]))
        for i in range(mpre.size - 1, 0, -1):
            mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
        i = np.where(mrec[1:] != mrec[:-1])[0]
        ap = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
    return ap


def ref_voc_eval(gt, dets, cls, ovthresh=0.5, use_07_metric=False):
    """``gt``: {image: [(box, label)]}; ``dets``: [(image, score, box, label)]. The devkit's loop;
    the only change: IoU without the +1 (our boxes are pixel edges, not inclusive pixel indices)."""
    class_recs = {}
    npos = 0
    for img, objs in gt.items():
        bbox = np.array([b for b, c in objs if c == cls]).reshape(-1, 4)
        class_recs[img] = {"bbox": bbox, "det": [False] * len(bbox)}
        npos += len(bbox)
    d = [x for x in dets if x[3] == cls]
    image_ids = [x[0] for x in d]
    confidence = np.array([x[1] for x in d])
    BB = np.array([x[2] for x in d]).reshape(-1, 4)
    sorted_ind = np.argsort(-confidence, kind="stable")
    BB = BB[sorted_ind, :]
    image_ids = [image_ids[x] for x in sorted_ind]
    nd = len(image_ids)
    tp, fp = np.zeros(nd), np.zeros(nd)
    for k in range(nd):
        R = class_recs[image_ids[k]]
        bb = BB[k, :].astype(float)
        ovmax = -np.inf
        BBGT = R["bbox"].astype(float)
        if BBGT.size > 0:
            ixmin = np.maximum(BBGT[:, 0], bb[0])
            iymin = np.maximum(BBGT[:, 1], bb[1])
            ixmax = np.minimum(BBGT[:, 2], bb[2])
            iymax = np.minimum(BBGT[:, 3], bb[3])
            iw = np.maximum(ixmax - ixmin, 0.0)
            ih = np.maximum(iymax - iymin, 0.0)
            inters = iw * ih
            uni = (bb[2] - bb[0]) * (bb[3] - bb[1]) + (BBGT[:, 2] - BBGT[:, 0]) * (BBGT[:, 3] - BBGT[:, 1]) - inters
            overlaps = inters / uni
            ovmax = np.max(overlaps)
            jmax = np.argmax(overlaps)
        if ovmax > ovthresh:
            if not R["det"][jmax]:
                tp[k] = 1.0
                R["det"][jmax] = 1
            else:
                fp[k] = 1.0
        else:
            fp[k] = 1.0
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return ref_voc_ap(rec, prec, use_07_metric)


# -- data ---------------------------------------------------------------------------------------------
def write_coco_gt(root: Path, gt: dict[int, list[tuple[list[float], int]]], size: int = 200) -> None:
    """COCO layout with ``gt``: {image id: [(xyxy, label)]}; images ``size`` x ``size``."""
    (root / "images" / "val").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, anns = [], []
    for image_id, objs in gt.items():
        name = f"img{image_id}.png"
        Image.new("RGB", (size, size)).save(root / "images" / "val" / name)
        images.append({"id": image_id, "file_name": name, "width": size, "height": size})
        for (x1, y1, x2, y2), label in objs:
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": CAT_IDS[label],
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    cats = [{"id": i, "name": n} for i, n in zip(CAT_IDS, NAMES)]
    (root / "annotations" / "instances_val.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}))


def write_results(path: Path, dets: list[tuple[int, float, list[float], int]]) -> list[dict]:
    res = [{"image_id": i, "category_id": CAT_IDS[c], "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s}
           for i, s, b, c in dets]
    path.write_text(json.dumps(res))
    return res


def random_case(seed: int = 0) -> tuple[dict, list]:
    """Several images with objects of all COCO sizes and jittered, missing and spurious detections."""
    rng = np.random.default_rng(seed)
    gt, dets = {}, []
    for image_id in (5, 7, 11, 12):
        objs = []
        for side in (12, 20, 40, 70, 120):
            x, y = rng.uniform(0, 200 - side, 2)
            x2, y2 = min(x + side * rng.uniform(0.8, 1.2), 200.0), y + side
            objs.append(([round(x, 1), round(y, 1), round(x2, 1), round(y2, 1)], int(rng.integers(0, 2))))
        gt[image_id] = objs
        for box, label in objs:
            if rng.random() < 0.2:
                continue  # missed
            jitter = rng.normal(0, 0.12 * (box[2] - box[0]), 4)
            b = np.clip(np.array(box) + jitter, 0, 200)
            if b[2] - b[0] < 1 or b[3] - b[1] < 1:
                continue
            c = label if rng.random() < 0.85 else 1 - label
            dets.append((image_id, round(float(rng.uniform(0.05, 1)), 4), [round(float(v), 2) for v in b], c))
        for _ in range(2):  # spurious
            x, y = rng.uniform(0, 150, 2)
            dets.append((image_id, round(float(rng.uniform(0.05, 1)), 4), [float(x), float(y), float(x + 30), float(y + 25)],
                         int(rng.integers(0, 2))))
    return gt, dets


def run_eval(argv: list[str]) -> int:
    return main(["evaluate", *argv])


# -- detection -----------------------------------------------------------------------------------------
def test_detection_coco_numbers_equal_pycocotools(tmp_path: Path) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, dets = random_case()
    write_coco_gt(tmp_path / "data", gt)
    res = write_results(tmp_path / "results.json", dets)
    assert run_eval(["detection", "--gt", str(tmp_path / "data"), "--pred", str(tmp_path / "results.json"),
                     "--output", str(tmp_path / "out")]) == 0
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())

    coco_gt = COCO(str(tmp_path / "data" / "annotations" / "instances_val.json"))
    ev = COCOeval(coco_gt, coco_gt.loadRes(res), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    s = ev.stats
    expected = {"mAP": s[0], "mAP50": s[1], "mAP75": s[2], "AP_small": s[3], "AP_medium": s[4], "AP_large": s[5],
                "mAR1": s[6], "mAR10": s[7], "mAR100": s[8]}
    assert min(expected.values()) > 0  # every size range has objects: the comparison means something
    for key, value in expected.items():
        assert m["coco"][key] == pytest.approx(value, abs=1e-6), key
    for k, name in enumerate(NAMES):
        p = ev.eval["precision"][:, :, k, 0, 2]
        assert m["coco_AP_per_class"][name] == pytest.approx(float(p[p > -1].mean()), abs=1e-6)
    for f in ("metrics.txt", "confusion_matrix.csv", "confusion_matrix.png", "pr_curves/cat.png", "pr_curves/dog.png"):
        assert (tmp_path / "out" / f).is_file(), f


def test_detection_voc_ap_equals_devkit(tmp_path: Path) -> None:
    gt, dets = random_case(seed=3)
    write_coco_gt(tmp_path / "data", gt)
    write_results(tmp_path / "results.json", dets)
    assert run_eval(["detection", "--gt", str(tmp_path / "data"), "--pred", str(tmp_path / "results.json"),
                     "--voc07", "--output", str(tmp_path / "out")]) == 0
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    for c, name in enumerate(NAMES):
        all_points = ref_voc_eval(gt, dets, c, use_07_metric=False)
        eleven = ref_voc_eval(gt, dets, c, use_07_metric=True)
        assert 0 < all_points < 1 and 0 < eleven < 1
        assert m["voc_AP50_per_class"][name] == pytest.approx(all_points, abs=1e-12)
        assert m["voc07_AP50_per_class"][name] == pytest.approx(eleven, abs=1e-12)


def test_detection_voc_ap_hand_computed(tmp_path: Path) -> None:
    # 4 cats; detections by score: hit, miss, hit, miss -> recall .25 .25 .5 .5, precision 1 .5 .67 .5
    boxes = [[10, 10, 40, 40], [60, 10, 90, 40], [10, 60, 40, 90], [60, 60, 90, 90]]
    write_coco_gt(tmp_path / "data", {1: [(b, 0) for b in boxes]})
    write_results(tmp_path / "r.json", [(1, 0.9, boxes[0], 0), (1, 0.8, [120, 120, 150, 150], 0),
                                        (1, 0.7, boxes[1], 0), (1, 0.6, [150, 150, 190, 190], 0)])
    assert run_eval(["detection", "--gt", str(tmp_path / "data"), "--pred", str(tmp_path / "r.json"), "--voc07",
                     "--output", str(tmp_path / "out")]) == 0
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    # 11-point: recall >= 0, .1, .2 -> 1; >= .3, .4, .5 -> 2/3; >= .6 .. 1 -> 0
    assert m["voc07_AP50_per_class"]["cat"] == pytest.approx((3 * 1 + 3 * 2 / 3) / 11)
    # all points: .25 * 1 + .25 * 2/3
    assert m["voc_AP50_per_class"]["cat"] == pytest.approx(0.25 + 0.25 * 2 / 3)
    assert m["voc_AP50_per_class"]["dog"] is None  # no ground truth: no AP, left out of the mean
    assert m["voc_mAP50"] == pytest.approx(0.25 + 0.25 * 2 / 3)


def test_detection_confusion_matrix(tmp_path: Path) -> None:
    cat, dog, missed_cat = [10, 10, 50, 50], [100, 100, 150, 150], [10, 120, 60, 180]
    write_coco_gt(tmp_path / "data", {1: [(cat, 0), (dog, 1), (missed_cat, 0)]})
    dets = [(1, 0.9, [11, 11, 50, 51], 0),  # correct
            (1, 0.8, [100, 102, 150, 150], 0),  # the dog called a cat
            (1, 0.7, [150, 10, 190, 50], 1),  # a dog where nothing is: background row
            (1, 0.1, [10, 120, 60, 180], 0)]  # under the confusion matrix's score threshold
    write_results(tmp_path / "r.json", dets)
    assert run_eval(["detection", "--gt", str(tmp_path / "data"), "--pred", str(tmp_path / "r.json"),
                     "--output", str(tmp_path / "out")]) == 0
    rows = list(csv.reader(open(tmp_path / "out" / "confusion_matrix.csv")))
    assert rows[0] == ["ground truth \\ predicted", "cat", "dog", "missed"]
    assert rows[1:] == [["cat", "1", "0", "1"], ["dog", "1", "0", "0"], ["background", "0", "1", "0"]]


def test_detection_yolo_txt_predictions_match_json(tmp_path: Path) -> None:
    gt, dets = random_case(seed=1)
    write_coco_gt(tmp_path / "data", gt)
    write_results(tmp_path / "r.json", dets)
    folder = tmp_path / "yolo"
    folder.mkdir()
    for image_id in gt:
        lines = [f"{c} {(b[0] + b[2]) / 400} {(b[1] + b[3]) / 400} {(b[2] - b[0]) / 200} {(b[3] - b[1]) / 200} {s}"
                 for i, s, b, c in dets if i == image_id]
        (folder / f"img{image_id}.txt").write_text("\n".join(lines) + "\n")
    for pred, out in ((tmp_path / "r.json", "a"), (folder, "b")):
        assert run_eval(["detection", "--gt", str(tmp_path / "data"), "--pred", str(pred),
                         "--output", str(tmp_path / out)]) == 0
    a, b = (json.loads((tmp_path / o / "metrics.json").read_text()) for o in "ab")
    for key, value in a["coco"].items():
        assert b["coco"][key] == pytest.approx(value, abs=1e-6)
    assert b["confusion_matrix"] == a["confusion_matrix"]


# -- segmentation ---------------------------------------------------------------------------------------
def save_mask(path: Path, mask: list[list[int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.array(mask, np.uint8), mode="L").save(path)


def test_segmentation_hand_computed(tmp_path: Path) -> None:
    save_mask(tmp_path / "gt" / "a.png", [[0, 0, 1], [1, 2, 255]])
    save_mask(tmp_path / "gt" / "b.png", [[2, 2], [0, 1]])
    save_mask(tmp_path / "pred" / "a_mask.png", [[0, 1, 1], [1, 2, 0]])  # as `visiontasks predict` names them
    save_mask(tmp_path / "pred" / "b.png", [[2, 0], [0, 2]])
    assert run_eval(["segmentation", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"),
                     "--names", "bg,road,car", "--output", str(tmp_path / "out")]) == 0
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    # rows ground truth, columns prediction; the 255 pixel is not counted
    expected = [[2, 1, 0],  # bg: a(0,0)->0, a(0,1)->1, b(1,0)->0
                [0, 2, 1],  # road: a(0,2)->1, a(1,0)->1, b(1,1)->2
                [1, 0, 2]]  # car: a(1,1)->2, b(0,0)->2, b(0,1)->0
    assert m["confusion_matrix"]["matrix"] == expected
    assert m["IoU_per_class"] == pytest.approx({"bg": 2 / 4, "road": 2 / 4, "car": 2 / 4})
    assert m["mIoU"] == pytest.approx(0.5)
    assert m["pixel_acc"] == pytest.approx(6 / 9)
    assert m["mean_class_acc"] == pytest.approx(2 / 3)
    assert (tmp_path / "out" / "confusion_matrix.png").is_file()


def test_segmentation_dataset_yaml_remaps_ids(tmp_path: Path) -> None:
    save_mask(tmp_path / "gt" / "a.png", [[0, 7], [7, 0]])  # raw ids 0 and 7 -> classes 0 and 1
    save_mask(tmp_path / "pred" / "a.png", [[0, 1], [0, 0]])
    (tmp_path / "data.yaml").write_text("classes: {0: background, 7: person}\nval: {images: im, masks: gt}\n")
    assert run_eval(["segmentation", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"),
                     "--dataset-yaml", str(tmp_path / "data.yaml"), "--output", str(tmp_path / "out")]) == 0
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["confusion_matrix"] == {"classes": ["background", "person"], "matrix": [[2, 0], [1, 1]]}


# -- classification -------------------------------------------------------------------------------------
def test_classification_hand_made(tmp_path: Path) -> None:
    (tmp_path / "gt.csv").write_text("id,label\na.png,ant\nb.png,bee\nc.png,bee\nd.png,wasp\n")
    (tmp_path / "pred.csv").write_text(
        "id,index,name,p_ant,p_bee,p_wasp\n"
        "a.png,0,ant,0.7,0.2,0.1\n"
        "b.png,0,ant,0.5,0.3,0.2\n"  # wrong; true class second
        "c.png,1,bee,0.1,0.8,0.1\n"
        "d.png,1,bee,0.2,0.5,0.3\n")  # wrong; true class second
    assert run_eval(["classification", "--gt", str(tmp_path / "gt.csv"), "--pred", str(tmp_path / "pred.csv"),
                     "--output", str(tmp_path / "out")]) == 0
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["top1"] == pytest.approx(0.5)
    assert m["top3"] == pytest.approx(1.0)  # 3 classes: top-5 is top-3
    assert m["acc_per_class"] == pytest.approx({"ant": 1.0, "bee": 0.5, "wasp": 0.0})
    assert m["confusion_matrix"]["matrix"] == [[1, 0, 0], [1, 1, 0], [0, 1, 0]]


def test_classification_image_folder_ground_truth(tmp_path: Path) -> None:
    for cls, stem in (("ant", "x1"), ("bee", "x2")):
        (tmp_path / "gt" / cls).mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(tmp_path / "gt" / cls / f"{stem}.png")
    (tmp_path / "pred.csv").write_text(f"id,name\n{tmp_path / 'gt' / 'ant' / 'x1.png'},ant\nx2,ant\n")
    assert run_eval(["classification", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred.csv"),
                     "--output", str(tmp_path / "out")]) == 0
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["top1"] == pytest.approx(0.5) and "top5" not in m


# -- bad input -------------------------------------------------------------------------------------------
def test_missing_prediction_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_coco_gt(tmp_path / "data", {1: [([10, 10, 50, 50], 0)]})
    missing = tmp_path / "nothing.json"
    assert run_eval(["detection", "--gt", str(tmp_path / "data"), "--pred", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err and "Traceback" not in err


def test_mask_size_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    save_mask(tmp_path / "gt" / "a.png", [[0, 1], [1, 0]])
    save_mask(tmp_path / "pred" / "a.png", [[0, 1, 1], [1, 0, 0]])
    assert run_eval(["segmentation", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path / "pred" / "a.png") in err and "3x2" in err


def test_missing_mask_prediction(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    save_mask(tmp_path / "gt" / "a.png", [[0, 1], [1, 0]])
    save_mask(tmp_path / "gt" / "b.png", [[0, 1], [1, 0]])
    save_mask(tmp_path / "pred" / "a.png", [[0, 1], [1, 0]])
    assert run_eval(["segmentation", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path / "gt" / "b.png") in err


def test_prediction_with_unknown_image_id(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_coco_gt(tmp_path / "data", {1: [([10, 10, 50, 50], 0)]})
    write_results(tmp_path / "r.json", [(99, 0.5, [10, 10, 50, 50], 0)])
    assert run_eval(["detection", "--gt", str(tmp_path / "data"), "--pred", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert str(tmp_path / "r.json") in err and "image_id 99" in err


def test_missing_annotation_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "r.json").write_text("[]")
    assert run_eval(["detection", "--gt", str(tmp_path / "data"), "--pred", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "instances_val.json" in err and "Traceback" not in err


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo"])
def test_predictions_in_the_datamodules_convention_match_every_format(tmp_path: Path, fmt: str) -> None:
    """Results written with the datamodule's image ids and category ids (as `visiontasks predict`
    writes them) are paired with the ground truth the same readers give: the ground truth as
    detections scores 1 everywhere."""
    from visiontasks.data.detection import DetectionDataModule
    from visiontasks.data.detection import synthetic_class_names, write_synthetic_detection

    root = tmp_path / fmt
    write_synthetic_detection(root, fmt, splits={"val": 6}, image_size=96, num_classes=2, background_fraction=0.0)
    names = synthetic_class_names(2)
    dm = DetectionDataModule(format=fmt, root=str(root), train=None, val="val",
                             class_names=names if fmt == "voc" else None)
    dm.setup("validate")
    split = dm.splits["val"]
    res = [{"image_id": r.image_id, "category_id": dm.category_ids[int(c)],
            "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])], "score": 0.9}
           for r in split.records for b, c in zip(r.boxes, r.labels)]
    assert res
    (tmp_path / "r.json").write_text(json.dumps(res))
    argv = ["detection", "--gt", str(root), "--pred", str(tmp_path / "r.json"), "--format", fmt,
            "--output", str(tmp_path / "out")]
    assert run_eval(argv + (["--names", ",".join(names)] if fmt == "voc" else [])) == 0
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["coco"]["mAP"] == pytest.approx(1.0) and m["voc_mAP50"] == pytest.approx(1.0)


def test_missing_mask_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    save_mask(tmp_path / "gt" / "a.png", [[0, 1], [1, 0]])
    assert run_eval(["segmentation", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path / "none") in err


# -- a detection test writes the same report; evaluate on predict's output reproduces it ----------------
def test_detection_test_writes_the_report_and_evaluate_reproduces_it(tmp_path: Path) -> None:
    import yaml

    from visiontasks.data.detection import write_synthetic_detection

    data = write_synthetic_detection(tmp_path / "shapes", "coco", splits={"train": 6, "val": 4}, image_size=48,
                                     num_classes=2, max_objects=2, background_fraction=0.0, seed=2)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": {"class_path": "visiontasks.tasks.DetectionTask",
                  "init_args": {"model": "yolov1", "backbone": "resnet18",
                                "model_kwargs": {"feature": "layer2", "head": "conv", "grid_size": 6,
                                                 "hidden_channels": 16, "score_thresh": 0.0}}},
        "data": {"class_path": "visiontasks.data.DetectionDataModule",
                 "init_args": {"format": "coco", "root": str(data), "test": "val", "image_size": 48,
                               "batch_size": 3, "augment": False}},
        "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 2, "limit_val_batches": 1,
                    "enable_progress_bar": False, "enable_model_summary": False,
                    "default_root_dir": str(tmp_path / "runs")},
    }))
    assert main(["fit", "--config", str(cfg)]) == 0
    assert main(["test", "--config", str(cfg), "--ckpt_path", "last"]) == 0
    run = tmp_path / "runs/tiny/version_0"
    diag = run / "test/diagnostics"
    assert {"metrics.json", "metrics.txt", "confusion_matrix.csv", "confusion_matrix.png"} <= {
        p.name for p in diag.iterdir()}
    assert sorted(p.name for p in (diag / "pr_curves").iterdir()) == ["circle.png", "square.png"]
    report = json.loads((diag / "metrics.json").read_text())
    assert {"AP_small", "AP_medium", "AP_large"} <= set(report["coco"])
    assert report["images"] == 4 and report["detections"] > 0
    with open(run / "test/metrics.csv") as f:
        logged = {k: float(v) for row in csv.DictReader(f) for k, v in row.items() if k.startswith("test/") and v}
    assert report["coco"]["mAP"] == pytest.approx(logged["test/mAP"], abs=1e-6)
    assert report["coco"]["mAP50"] == pytest.approx(logged["test/mAP50"], abs=1e-6)

    # predict writes COCO results; evaluate scores them against the same ground truth
    assert main(["predict", "--config", str(cfg), "--ckpt_path", "last"]) == 0
    results = run / "predict/predictions/results.json"
    assert main(["evaluate", "detection", "--gt", str(data), "--format", "coco", "--split", "val",
                 "--pred", str(results), "--output", str(tmp_path / "eval")]) == 0
    evaluated = json.loads((tmp_path / "eval/metrics.json").read_text())
    assert evaluated["detections"] == report["detections"]
    # results.json rounds boxes to 0.01 px and scores to 1e-5: the same numbers within that
    for key in ("mAP", "mAP50", "mAP75", "mAR100"):
        assert evaluated["coco"][key] == pytest.approx(report["coco"][key], abs=2e-3), key


def test_diagnostics_writer_reads_the_test_metric_boxes(tmp_path: Path) -> None:
    """The callback's report has the numbers of the task's own test metric (the metric keeps boxes as
    xywh inside; the report needs them back as xyxy)."""
    from types import SimpleNamespace

    import torch

    from visiontasks.metrics.detection import make_map_metric
    from visiontasks.outputs import DetectionDiagnosticsWriter

    rng = np.random.default_rng(0)
    metric = make_map_metric()
    for _ in range(6):
        xy = rng.uniform(0, 60, (3, 2))
        gt = np.concatenate([xy, xy + rng.uniform(10, 40, (3, 2))], 1)
        det = gt + rng.normal(0, 3, gt.shape)  # near misses: AP strictly between 0 and 1
        labels = torch.as_tensor(rng.integers(0, 2, 3))
        metric.update([{"boxes": torch.as_tensor(det, dtype=torch.float32), "labels": labels,
                        "scores": torch.as_tensor(rng.uniform(0.3, 1, 3), dtype=torch.float32)}],
                      [{"boxes": torch.as_tensor(gt, dtype=torch.float32), "labels": labels}])
    module = SimpleNamespace(metrics={"test": metric}, class_names=["cat", "dog"], num_classes=2)
    trainer = SimpleNamespace(is_global_zero=True, logger=None, default_root_dir=str(tmp_path))
    DetectionDiagnosticsWriter().on_test_epoch_end(trainer, module)
    expected = metric.compute()
    report = json.loads((tmp_path / "diagnostics/metrics.json").read_text())
    assert 0.2 < float(expected["map"]) < 0.95
    for key, src in (("mAP", "map"), ("mAP50", "map_50"), ("mAR100", "mar_100"), ("AP_small", "map_small")):
        assert report["coco"][key] == pytest.approx(float(expected[src]), abs=1e-6), key
    assert report["images"] == 6 and report["ground_truth_boxes"] == 18
