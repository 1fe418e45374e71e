"""Proposal quality: recall at IoU thresholds and (mean) average best overlap, as in the selective
search paper (section 5.1) and R-CNN's proposal evaluation."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torchvision.ops import box_iou


def best_overlaps(proposals: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """For each ground-truth box ``[G, 4]``, the best IoU with any proposal ``[P, 4]`` (xyxy px);
    0 where there are no proposals. Returns ``float64 [G]``."""
    gt = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
    props = np.asarray(proposals, np.float32).reshape(-1, 4)
    if len(gt) == 0:
        return np.zeros(0)
    if len(props) == 0:
        return np.zeros(len(gt))
    return box_iou(torch.from_numpy(gt), torch.from_numpy(props)).max(1).values.double().numpy()


def proposal_recall(
    proposals: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    iou_thresholds: Sequence[float] = (0.5, 0.7),
    top_k: int | None = None,
) -> dict[str, float]:
    """Recall of the ground truth by the proposals, per image pairs ``(proposals[i], gt_boxes[i])``.

    Returns ``{"recall@0.5": ..., "recall@0.7": ..., "abo": mean best overlap over boxes,
    "num_gt": G, "num_images": N, "mean_proposals": mean P}``; ``top_k`` keeps each image's first
    (best-ranked) ``top_k`` proposals. Images without ground truth count only in the proposal mean.
    """
    if len(proposals) != len(gt_boxes):
        raise ValueError(f"{len(proposals)} proposal arrays for {len(gt_boxes)} ground-truth arrays")
    overlaps, counts = [], []
    for props, gt in zip(proposals, gt_boxes):
        props = np.asarray(props).reshape(-1, 4)
        if top_k is not None:
            props = props[:top_k]
        counts.append(len(props))
        overlaps.append(best_overlaps(props, gt))
    best = np.concatenate(overlaps) if overlaps else np.zeros(0)
    out = {f"recall@{t:g}": float((best >= t).mean()) if len(best) else float("nan") for t in iou_thresholds}
    out["abo"] = float(best.mean()) if len(best) else float("nan")
    out["num_gt"] = int(len(best))
    out["num_images"] = len(proposals)
    out["mean_proposals"] = float(np.mean(counts)) if counts else 0.0
    return out
