"""COCO mAP for detection: the torchmetrics metric with COCOeval's exact thresholds, and the values
a task logs from it."""

from __future__ import annotations

import numpy as np
from torch import Tensor
from torchmetrics.detection import MeanAveragePrecision


def make_map_metric(class_metrics: bool = True, iou_type: str | tuple[str, ...] = "bbox") -> MeanAveragePrecision:
    """COCO mAP over boxes (xyxy), computed by faster_coco_eval; per-class AP when asked.
    ``iou_type=("bbox", "segm")`` adds mask AP (predictions and targets then carry bool ``masks``
    ``[K, H, W]``; the results' keys get ``bbox_`` / ``segm_`` prefixes).

    The IoU and recall thresholds are COCOeval's own float64 values: torchmetrics' defaults come from
    a float32 ``linspace`` (0.30000001 instead of 0.3), which moves recall steps such as 3/10 to the
    other side of a threshold and changes AP in the third decimal.
    """
    iou_thresholds = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1).tolist()
    rec_thresholds = np.linspace(0.0, 1.0, int(np.round(1.0 / 0.01)) + 1).tolist()
    return MeanAveragePrecision(box_format="xyxy", iou_type=iou_type, backend="faster_coco_eval",
                                class_metrics=class_metrics, iou_thresholds=iou_thresholds,
                                rec_thresholds=rec_thresholds)


def map_results_to_log(
    results: dict[str, Tensor], class_names: list[str], prefix: str, iou_type: str = "", name: str = ""
) -> dict[str, float]:
    """``{prefix}/mAP`` (@[.5:.95]), ``mAP50``, ``mAP75``, ``mAR100`` and ``{prefix}/AP/<class>``
    (only classes with ground truth or detections; COCO's -1 "no data" entries are left out).
    ``iou_type`` (``bbox`` / ``segm``) picks that part of a two-type metric's results; ``name``
    prefixes the logged names (``mask_`` -> ``{prefix}/mask_mAP``, ``{prefix}/mask_AP/<class>``)."""
    key = f"{iou_type}_" if iou_type else ""
    out = {
        f"{prefix}/{name}mAP": float(results[f"{key}map"]),
        f"{prefix}/{name}mAP50": float(results[f"{key}map_50"]),
        f"{prefix}/{name}mAP75": float(results[f"{key}map_75"]),
        f"{prefix}/{name}mAR100": float(results[f"{key}mar_100"]),
    }
    per_class = results.get(f"{key}map_per_class")
    classes = results.get("classes")
    if per_class is not None and classes is not None:
        for c, ap in zip(classes.reshape(-1).tolist(), per_class.reshape(-1).tolist()):
            if ap >= 0 and 0 <= c < len(class_names):
                out[f"{prefix}/{name}AP/{class_names[c]}"] = float(ap)
    return out
