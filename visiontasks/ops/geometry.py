"""Boxes and masks between transformed-image pixels and original-image (file) pixels."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .keypoints import keypoints_to_original


def clip_boxes(boxes: Tensor, size: Sequence[int]) -> Tensor:
    """Boxes ``[K, 4]`` xyxy clipped to an image of ``size`` = (H, W) pixels (a new tensor)."""
    h, w = float(size[0]), float(size[1])
    out = boxes.clone()
    out[:, 0::2] = out[:, 0::2].clamp(0, w)
    out[:, 1::2] = out[:, 1::2].clamp(0, h)
    return out


def boxes_to_original(boxes: Tensor, image_box: Tensor, orig_size: Sequence[int]) -> Tensor:
    """Map boxes ``[K, 4]`` xyxy from transformed-image pixels back to the file's pixels.

    ``image_box`` ``[4]`` is where the whole file lies in the transformed image (xyxy; for a
    letterbox the padded frame is outside it), ``orig_size`` the file's (H, W). The inverse of any
    resize/letterbox; valid for evaluation pipelines (no flips or crops). Result clipped to the file.
    """
    h0, w0 = float(orig_size[0]), float(orig_size[1])
    ib = image_box.to(boxes.dtype)
    sx = (ib[2] - ib[0]) / w0
    sy = (ib[3] - ib[1]) / h0
    out = boxes.clone()
    out[:, 0::2] = ((boxes[:, 0::2] - ib[0]) / sx).clamp(0, w0)
    out[:, 1::2] = ((boxes[:, 1::2] - ib[1]) / sy).clamp(0, h0)
    return out


def mask_to_original(mask: Tensor, size: Sequence[int], orig_size: Sequence[int] | None = None) -> Tensor:
    """A class-index mask ``[H_pad, W_pad]`` of a padded batch cropped to the image's own ``size``
    (H, W) and, when ``orig_size`` differs, resized to it with nearest-neighbour (class indices are
    never blended). Returns ``[H0, W0]`` with the input's dtype."""
    h, w = int(size[0]), int(size[1])
    mask = mask[:h, :w]
    if orig_size is None or (int(orig_size[0]), int(orig_size[1])) == (h, w):
        return mask
    resized = F.interpolate(mask[None, None].float(), size=(int(orig_size[0]), int(orig_size[1])), mode="nearest")
    return resized[0, 0].to(mask.dtype)


def map_to_original(values: Tensor, orig_size: Sequence[int]) -> Tensor:
    """A float map ``[H, W]`` over the whole model input of a stretch resize (classification's
    evaluation: the file stretched to ``image_size``) at the file's ``orig_size`` (H0, W0): the
    inverse stretch, bilinear. Returns float32 ``[H0, W0]``."""
    size = (int(orig_size[0]), int(orig_size[1]))
    if tuple(values.shape[-2:]) == size:
        return values.float()
    return F.interpolate(values[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]


def instance_masks_to_original(masks: Tensor, image_box: Tensor, orig_size: Sequence[int]) -> Tensor:
    """Instance masks ``[K, H, W]`` of a transformed image back to the file's pixels ``[K, H0, W0]``
    (same dtype): each file pixel takes the value at its centre's place in the transformed image
    (``image_box`` xyxy is where the file lies there, e.g. inside a letterbox's padding), i.e. a
    nearest-neighbour resize of that part. For evaluation pipelines (no flips or crops), like
    :func:`boxes_to_original`."""
    h0, w0 = int(orig_size[0]), int(orig_size[1])
    h, w = masks.shape[-2:]
    ib = image_box.double().cpu()
    cols = (ib[0] + (torch.arange(w0, dtype=torch.float64) + 0.5) * (ib[2] - ib[0]) / w0).floor().long().clamp(0, w - 1)
    rows = (ib[1] + (torch.arange(h0, dtype=torch.float64) + 0.5) * (ib[3] - ib[1]) / h0).floor().long().clamp(0, h - 1)
    return masks[:, rows.to(masks.device)][:, :, cols.to(masks.device)]


def roi_masks_to_image(roi_masks: Tensor, boxes: Tensor, size: Sequence[int]) -> Tensor:
    """Per-RoI mask probabilities ``[D, M, M]`` (each covering its box) pasted into an image of
    ``size`` = (H, W): ``float [D, H, W]`` in [0, 1]. ``boxes`` ``[D, 4]`` xyxy in that image's
    pixels. torchvision's ``paste_masks_in_image`` (Mask R-CNN's own pasting, one-pixel padding)."""
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    h, w = int(size[0]), int(size[1])
    if len(roi_masks) == 0:
        return roi_masks.new_zeros((0, h, w), dtype=torch.float32)
    return paste_masks_in_image(roi_masks[:, None].float(), boxes.float(), (h, w))[:, 0]


def detections_to_original(detections: list[dict[str, Tensor]], geometry: list[dict]) -> list[dict[str, Tensor]]:
    """Per image, ``detections[i]["boxes"]`` mapped to the file's pixels with
    :func:`boxes_to_original` when ``geometry[i]`` carries ``image_box`` and ``orig_size`` (a detection
    target or the same keys alone); other keys unchanged. The counterpart of torchvision's
    ``GeneralizedRCNNTransform.postprocess``.

    Instance masks: a detection's ``roi_masks`` ``[D, M, M]`` (probabilities inside each box, e.g.
    Mask R-CNN's 28 x 28) become ``masks`` float ``[D, H, W]`` pasted at the boxes as returned: in
    the file's ``orig_size`` when mapped, else in ``geometry[i]["size"]`` (the image as given).
    Keypoints (``keypoints`` ``[D, P, 3]``, Keypoint R-CNN) are mapped with the boxes
    (:func:`~visiontasks.ops.keypoints.keypoints_to_original`).
    """
    out = []
    for det, geo in zip(detections, geometry):
        size = geo.get("size")
        if "image_box" in geo and "orig_size" in geo:
            det = {**det, "boxes": boxes_to_original(det["boxes"].float(), geo["image_box"], geo["orig_size"])}
            if "keypoints" in det:
                det["keypoints"] = keypoints_to_original(det["keypoints"].float(), geo["image_box"], geo["orig_size"])
            size = geo["orig_size"]
        if "roi_masks" in det:
            det = dict(det)
            if size is None:
                raise ValueError("pasting instance masks needs the image size (geometry 'size')")
            det["masks"] = roi_masks_to_image(det.pop("roi_masks"), det["boxes"], size)
        out.append(det)
    return out
