"""Detection diagnostics beyond COCO mAP: Pascal VOC AP (all-points and 11-point), per-class
precision/recall curves and the detection confusion matrix with a background row/column.

Inputs are per image: ground truth ``boxes`` float ``[K, 4]`` xyxy in file pixels and ``labels``
int64 ``[K]`` (0 = first class); detections ``boxes`` ``[D, 4]``, ``scores`` ``[D]``, ``labels``
``[D]``. IoU is torchvision's ``box_iou`` on pixel-edge coordinates (no ``+1`` as in the 2007 devkit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou

# The recall thresholds of VOC2007's 11-point AP exactly as the devkit's ``voc_eval`` makes them
# (``np.arange``: 0.30000000000000004, not 0.3), so a recall of exactly 3/10 scores as it does there.
VOC07_RECALLS = np.arange(0.0, 1.1, 0.1)


@dataclass
class ImageBoxes:
    """Boxes of one image (ground truth: ``scores`` is ``None``)."""

    boxes: np.ndarray  # float [N, 4] xyxy pixels
    labels: np.ndarray  # int64 [N]
    scores: np.ndarray | None = None  # float [N]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``[len(a), len(b)]`` (float64)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    return box_iou(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)).numpy()


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07: bool = False) -> float:
    """AP from a precision/recall curve (detections in descending score order).

    ``use_07``: VOC2007's 11-point mean of the best precision at recall >= 0, 0.1, ..., 1;
    otherwise VOC2010+'s all-points area under the monotone (right-to-left maximum) precision.
    """
    recall, precision = np.asarray(recall, float), np.asarray(precision, float)
    if use_07:
        best = [precision[recall >= t].max() if (recall >= t).any() else 0.0 for t in VOC07_RECALLS]
        return float(np.sum(best) / 11.0)
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


@dataclass
class ClassPR:
    """One class's precision/recall at an IoU threshold (detections in descending score order)."""

    scores: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    num_gt: int


def class_pr(gts: list[ImageBoxes], dets: list[ImageBoxes], cls: int, iou_thresh: float = 0.5) -> ClassPR:
    """The devkit's ``voc_eval`` matching for class ``cls``: all its detections over all images in
    descending score order; each is a true positive when its best-IoU ground truth of that class (in
    its image) has IoU > ``iou_thresh`` and was not taken by a higher-scoring detection, else a false
    positive. ``recall`` is NaN when the class has no ground truth."""
    gt_boxes = [g.boxes[g.labels == cls] for g in gts]
    taken = [np.zeros(len(b), bool) for b in gt_boxes]
    num_gt = int(sum(len(b) for b in gt_boxes))
    img, boxes, scores = [], [], []
    for i, d in enumerate(dets):
        keep = d.labels == cls
        img += [i] * int(keep.sum())
        boxes.append(d.boxes[keep].reshape(-1, 4))
        scores.append(d.scores[keep])
    scores_all = np.concatenate(scores) if scores else np.zeros(0)
    boxes_all = np.concatenate(boxes) if boxes else np.zeros((0, 4))
    order = np.argsort(-scores_all, kind="stable")
    tp = np.zeros(len(order))
    for rank, j in enumerate(order):
        i = img[j]
        ious = _iou(boxes_all[j:j + 1], gt_boxes[i])[0]
        if ious.size and ious.max() > iou_thresh:
            k = int(ious.argmax())
            if not taken[i][k]:
                taken[i][k] = True
                tp[rank] = 1
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    recall = ctp / num_gt if num_gt else np.full(len(tp), np.nan)
    precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    return ClassPR(scores_all[order], precision, recall, num_gt)


def voc_results(gts: list[ImageBoxes], dets: list[ImageBoxes], num_classes: int,
                iou_thresh: float = 0.5) -> tuple[list[ClassPR], list[float], list[float]]:
    """Per class: the PR curve, the all-points AP and the 11-point AP (NaN without ground truth)."""
    curves, ap, ap07 = [], [], []
    for c in range(num_classes):
        pr = class_pr(gts, dets, c, iou_thresh)
        curves.append(pr)
        if pr.num_gt == 0:
            ap.append(float("nan"))
            ap07.append(float("nan"))
        else:
            ap.append(voc_ap(pr.recall, pr.precision, use_07=False))
            ap07.append(voc_ap(pr.recall, pr.precision, use_07=True))
    return curves, ap, ap07


def detection_confusion_matrix(gts: list[ImageBoxes], dets: list[ImageBoxes], num_classes: int,
                               iou_thresh: float = 0.5, score_thresh: float = 0.25) -> np.ndarray:
    """``int64 [K+1, K+1]``: rows = ground-truth class, then ``background`` (false positives);
    columns = predicted class, then ``missed`` (ground truth no detection matched).

    Per image, detections scoring at least ``score_thresh`` are taken greedily in descending score
    order; each is matched to the not yet matched ground-truth box (of any class) with the highest
    IoU, if that IoU is at least ``iou_thresh``: the cell (its class, the detection's class) counts
    one (off the diagonal: a confusion). A detection with no such box counts in the background row;
    a ground-truth box left unmatched counts in the missed column.
    """
    k = num_classes
    cm = np.zeros((k + 1, k + 1), np.int64)
    for g, d in zip(gts, dets):
        keep = d.scores >= score_thresh
        boxes, labels, scores = d.boxes[keep], d.labels[keep], d.scores[keep]
        order = np.argsort(-scores, kind="stable")
        ious = _iou(boxes, g.boxes)
        free = np.ones(len(g.labels), bool)
        for j in order:
            cand = np.where(free & (ious[j] >= iou_thresh), ious[j], -1.0)
            if cand.size and cand.max() >= 0:
                m = int(cand.argmax())
                free[m] = False
                cm[int(g.labels[m]), int(labels[j])] += 1
            else:
                cm[k, int(labels[j])] += 1
        for m in np.flatnonzero(free):
            cm[int(g.labels[m]), k] += 1
    return cm
