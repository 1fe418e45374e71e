"""Our mAP numbers (torchmetrics + faster_coco_eval, as the task logs them) against pycocotools."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from visiontasks.metrics.detection import make_map_metric, map_results_to_log


def _fixed_data(seed: int = 0, images: int = 12, classes: int = 3):
    """Ground truth and imperfect detections (jittered, missed, false, wrong-class), all fixed."""
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for i in range(images):
        k = int(rng.integers(0, 5))  # some images have no objects
        xy = rng.uniform(0, 150, size=(k, 2))
        wh = rng.uniform(4, 90, size=(k, 2))  # small, medium and large objects
        boxes = np.concatenate([xy, xy + wh], 1)
        labels = rng.integers(0, classes, size=k)
        if i == 3:
            labels[:] = 0  # class imbalance
        pb, pl, ps = [], [], []
        for b, lab in zip(boxes, labels):
            if rng.random() < 0.15:
                continue  # missed
            jitter = rng.normal(0, 0.08, size=4) * np.r_[b[2:] - b[:2], b[2:] - b[:2]]
            pb.append(b + jitter)
            pl.append(lab if rng.random() > 0.1 else (lab + 1) % classes)
            ps.append(rng.uniform(0.3, 1.0))
        for _ in range(int(rng.integers(0, 3))):  # false positives
            xy0 = rng.uniform(0, 150, size=2)
            pb.append(np.r_[xy0, xy0 + rng.uniform(5, 60, size=2)])
            pl.append(int(rng.integers(0, classes)))
            ps.append(rng.uniform(0.0, 0.7))
        gts.append({"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                    "labels": torch.tensor(labels, dtype=torch.int64)})
        preds.append({"boxes": torch.tensor(np.array(pb), dtype=torch.float32).reshape(-1, 4),
                      "scores": torch.tensor(ps, dtype=torch.float32),
                      "labels": torch.tensor(pl, dtype=torch.int64)})
    return preds, gts


def _pycocotools(preds, gts, classes: int):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    for i, (p, g) in enumerate(zip(preds, gts)):
        images.append({"id": i, "width": 300, "height": 300})
        for b, lab in zip(g["boxes"].tolist(), g["labels"].tolist()):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": lab,
                         "bbox": [b[0], b[1], w, h], "area": w * h, "iscrowd": 0})
        for b, s, lab in zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist()):
            dets.append({"image_id": i, "category_id": lab, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                         "score": s})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": c, "name": str(c)} for c in range(classes)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    per_class = {}
    for k, cat in enumerate(ev.params.catIds):
        prec = ev.eval["precision"][:, :, k, 0, -1]  # IoUs x recall, area all, maxDets 100
        prec = prec[prec > -1]
        per_class[cat] = float(prec.mean()) if prec.size else -1.0
    return ev.stats, per_class


@pytest.mark.parametrize("seed", [0, 1])
def test_map_equals_pycocotools(seed: int) -> None:
    classes = 3
    preds, gts = _fixed_data(seed, classes=classes)
    metric = make_map_metric()
    for i in range(0, len(preds), 4):  # updated per batch, computed once
        metric.update(preds[i : i + 4], gts[i : i + 4])
    ours = map_results_to_log(metric.compute(), ["circle", "square", "triangle"], "val")
    stats, per_class = _pycocotools(preds, gts, classes)
    assert 0.1 < stats[0] < 0.95  # a non-trivial case
    assert ours["val/mAP"] == pytest.approx(stats[0], abs=1e-6)
    assert ours["val/mAP50"] == pytest.approx(stats[1], abs=1e-6)
    assert ours["val/mAP75"] == pytest.approx(stats[2], abs=1e-6)
    assert ours["val/mAR100"] == pytest.approx(stats[8], abs=1e-6)
    for c, name in enumerate(["circle", "square", "triangle"]):
        assert ours[f"val/AP/{name}"] == pytest.approx(per_class[c], abs=1e-6)
