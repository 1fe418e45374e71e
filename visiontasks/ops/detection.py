"""Detection post-processing and IoU helpers shared by the detectors that decode their own outputs.

Boxes are float ``[K, 4]`` xyxy in pixels of the image as the model saw it. Thresholds, clipping,
small-box removal and per-class NMS are torchvision's ops (``clip_boxes_to_image``,
``nms`` with ``batched_nms``'s class offsets), applied in the order torchvision's ``RoIHeads.postprocess_detections`` uses.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torchvision.ops import box_iou, clip_boxes_to_image, nms

__all__ = ["box_iou", "paired_box_iou", "postprocess_detections"]


def postprocess_detections(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    image_size: Sequence[int],
    score_thresh: float,
    nms_thresh: float,
    detections_per_img: int,
    min_size: float = 1e-2,
) -> dict[str, Tensor]:
    """Candidate detections of one image -> its final detections.

    ``boxes`` ``[K, 4]`` xyxy pixels, ``scores`` ``[K]`` in [0, 1], ``labels`` ``[K]`` (0-based
    classes): keep ``scores > score_thresh``, clip the boxes to ``image_size`` = (H, W), drop boxes
    with a side shorter than ``min_size`` pixels (or empty), per-class NMS at IoU ``nms_thresh``
    (``torchvision.ops.nms`` over boxes shifted apart by class, as ``batched_nms``), then the ``detections_per_img`` best.

    Returns ``dict(boxes=[D, 4] float32, scores=[D] float32 sorted descending, labels=[D] int64)``.
    """
    boxes, scores = boxes.reshape(-1, 4).float(), scores.reshape(-1).float()
    labels = labels.reshape(-1).long()
    keep = torch.nonzero(scores > score_thresh).flatten()
    boxes = clip_boxes_to_image(boxes[keep], (int(image_size[0]), int(image_size[1])))
    scores, labels = scores[keep], labels[keep]
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    keep = torch.nonzero((w >= min_size) & (h >= min_size) & (w > 0) & (h > 0)).flatten()
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    # per-class NMS as torchvision's ``batched_nms`` does it (one ``nms`` over boxes shifted apart by
    # class), with the shift bounded by the clip instead of ``boxes.max()``: no branch on the box
    # count, so ``torch.export`` can trace it (``batched_nms`` returns early for no boxes)
    offsets = labels.to(boxes.dtype) * float(max(int(image_size[0]), int(image_size[1])) + 1)
    keep = nms(boxes + offsets[:, None], scores, nms_thresh)[:detections_per_img]
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}


def paired_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of boxes ``a [..., 4]`` and ``b [..., 4]`` element by element (broadcast), xyxy.

    ``torchvision.ops.box_iou`` gives the full ``N x M`` matrix of two box lists; this is the IoU of
    each box with its own partner (e.g. each YOLO predictor with its cell's object)."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter).clamp(min=1e-9)
