"""Keypoints between transformed-image pixels and original-image (file) pixels, and COCO's OKS
constants.

Keypoints are float ``[D, P, 3]``: ``(x, y, third)`` per keypoint with x, y in pixels; the third
column is carried unchanged (a target's COCO visibility ``v`` in {0, 1, 2}, a prediction's
keypoint score).
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor

# COCO's per-keypoint OKS sigmas of its 17 person keypoints (cocoapi's COCOeval ``kpt_oks_sigmas``,
# nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles)
COCO_PERSON_SIGMAS: tuple[float, ...] = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087,
    0.089, 0.089,
)


def default_sigmas(num_keypoints: int) -> list[float]:
    """OKS sigmas when a data set declares none: COCO's person sigmas for 17 keypoints, else ``1 / P``
    for each (as Ultralytics does)."""
    if num_keypoints == len(COCO_PERSON_SIGMAS):
        return list(COCO_PERSON_SIGMAS)
    return [1.0 / max(num_keypoints, 1)] * num_keypoints


def keypoints_to_original(keypoints: Tensor, image_box: Tensor, orig_size: Sequence[int]) -> Tensor:
    """Map keypoints ``[D, P, 3]`` from transformed-image pixels back to the file's pixels, as
    :func:`~visiontasks.ops.geometry.boxes_to_original` maps boxes (``image_box`` ``[4]`` xyxy: where
    the file lies in the transformed image; ``orig_size`` the file's (H, W)); x, y clipped to the
    file, the third column unchanged. For evaluation pipelines (no flips or crops)."""
    h0, w0 = float(orig_size[0]), float(orig_size[1])
    ib = image_box.to(keypoints.dtype)
    sx = (ib[2] - ib[0]) / w0
    sy = (ib[3] - ib[1]) / h0
    out = keypoints.clone()
    out[..., 0] = ((keypoints[..., 0] - ib[0]) / sx).clamp(0, w0)
    out[..., 1] = ((keypoints[..., 1] - ib[1]) / sy).clamp(0, h0)
    return out
