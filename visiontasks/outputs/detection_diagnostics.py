"""After a detection ``test``: the report ``visiontasks evaluate detection`` writes, from the boxes the
test metric collected (no second pass over the data, no second file of predictions)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.callbacks import Callback
from torchvision.ops import box_convert

from visiontasks.metrics.detection_diagnostics import ImageBoxes
from visiontasks.runs import run_dir

from .report import write_detection_report


class DetectionDiagnosticsWriter(Callback):
    """``<run>/diagnostics/``: ``metrics.json`` (COCO mAP/mAR with AP for small/medium/large objects,
    per-class COCO and VOC AP), ``metrics.txt``, ``confusion_matrix.csv`` / ``.png`` (IoU 0.5,
    detections scoring >= ``conf``, with a background row and a missed column) and
    ``pr_curves/<class>.png`` — the files of ``visiontasks evaluate detection``.

    The boxes are those the task's test metric (torchmetrics' ``MeanAveragePrecision``) holds at the
    end of the test epoch, in file pixels: read in ``on_test_epoch_end``, which Lightning runs for
    callbacks before the task's own (where the metric is computed and reset). Under DDP the states are
    gathered from every process (a collective call on all ranks) and rank 0 writes."""

    def __init__(self, conf: float = 0.25, voc07: bool = False, folder: str = "diagnostics") -> None:
        self.conf = conf
        self.voc07 = voc07
        self.folder = folder

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = getattr(pl_module, "metrics", None)
        metric = metrics["test"] if metrics is not None and "test" in metrics else None
        if metric is None or not hasattr(metric, "detection_box"):
            return
        with metric.sync_context(should_unsync=True):
            gts, dets = _image_boxes(metric)
        if trainer.is_global_zero and gts:
            names = list(getattr(pl_module, "class_names", [])) or [str(i) for i in range(pl_module.num_classes)]
            write_detection_report(run_dir(trainer) / self.folder, gts, dets, names, self.conf, self.voc07)


def _image_boxes(metric: Any) -> tuple[list[ImageBoxes], list[ImageBoxes]]:
    """Per-image ground truth and detections (xyxy) from a ``MeanAveragePrecision``'s list states,
    which hold boxes as COCO's ``xywh`` whatever ``box_format`` the metric was given."""
    def arr(t: Any) -> np.ndarray:
        return t.detach().cpu().double().numpy().reshape(-1)

    def xyxy(t: Any) -> np.ndarray:
        return box_convert(t.detach().cpu().double().reshape(-1, 4), "xywh", "xyxy").numpy()

    gts = [ImageBoxes(xyxy(b), arr(lab).astype(np.int64))
           for b, lab in zip(metric.groundtruth_box, metric.groundtruth_labels)]
    dets = [ImageBoxes(xyxy(b), arr(lab).astype(np.int64), arr(s))
            for b, s, lab in zip(metric.detection_box, metric.detection_scores, metric.detection_labels)]
    return gts, dets
