"""Detection outputs: COCO results JSON and PNGs with the boxes drawn (and the instance masks, for
instance segmentation predictions carrying ``segmentation``: one COCO RLE per detection; and the
keypoints with their skeleton, for keypoint predictions carrying ``keypoints`` ``[D, P, 3]``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback
from PIL import Image

from visiontasks.data.io import read_image

from .common import PerImageWriter, gather_rows, output_dir, write_text_atomic
from .drawing import DRAW_NMS_IOU, DRAW_SCORE_THRESH, render_detections, shown_detections


def category_ids(trainer: pl.Trainer, num_classes: int) -> list[int]:
    """The dataset's category id of each class index: the datamodule's ``category_ids`` (e.g. COCO's
    1-based, gapped ids) when it has one per class, else ``0..num_classes-1``."""
    ids = getattr(trainer.datamodule, "category_ids", None) if trainer.datamodule is not None else None
    if ids and len(ids) == num_classes:
        return [int(i) for i in ids]
    return list(range(num_classes))


class CocoResultsWriter(BasePredictionWriter):
    """``results.json`` in ``output_dir`` (default: the run's ``predictions`` folder), COCO results
    format: ``{image_id, category_id, bbox: [x, y, w, h] in file pixels (2 decimals), score}`` for
    every detection, plus ``segmentation`` (COCO RLE, file pixels) when the predictions carry
    instance masks and ``keypoints`` (flat ``[x, y, score] * P``, file pixels; the score is the
    detector's keypoint score, which COCO's evaluation ignores) when they carry keypoints. Under DDP
    the entries of all processes are gathered (an image repeated by the distributed sampler counts
    once) and rank 0 writes."""

    def __init__(self, output_dir: str | os.PathLike | None = None) -> None:
        super().__init__("batch_and_epoch")
        self.output_dir = output_dir
        self._results: list[dict[str, Any]] = []
        self._ids: list[int] = []

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._results = []
        self._ids = category_ids(trainer, pl_module.num_classes)

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Any,
                           batch_indices: Sequence[int] | None, batch: Any, batch_idx: int,
                           dataloader_idx: int) -> None:
        for p in prediction:
            for k, (b, s, c) in enumerate(zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist())):
                self._results.append({
                    "image_id": int(p["image_id"]), "category_id": self._ids[c],
                    "bbox": [round(b[0], 2), round(b[1], 2), round(b[2] - b[0], 2), round(b[3] - b[1], 2)],
                    "score": round(float(s), 5),
                })
                if "segmentation" in p:
                    self._results[-1]["segmentation"] = p["segmentation"][k]
                if "keypoints" in p:  # COCO's flat x, y, score triples (file pixels)
                    self._results[-1]["keypoints"] = [round(float(v), 4 if j % 3 == 2 else 2) for j, v in
                                                      enumerate(p["keypoints"][k].reshape(-1).tolist())]

    def write_on_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, predictions: Sequence[Any],
                           batch_indices: Sequence[Any]) -> None:
        results = gather_rows(self._results, "image_id")
        self._results = []
        if trainer.is_global_zero:
            write_text_atomic(output_dir(trainer, self.output_dir) / "results.json", json.dumps(results))


class DetectionDrawingWriter(PerImageWriter):
    """One PNG per image, ``<image_id:06d>_<file stem>.png`` in ``output_dir`` (default: the run's
    ``predictions`` folder): the image file with its detections drawn (box, class name and score on
    a label in the class colour; sizes scale with the image, see :mod:`visiontasks.outputs.drawing`),
    and, for instance segmentation, each drawn detection's mask filled in its class colour; for
    keypoint detection its keypoints and the skeleton in its class colour.

    Drawn are the detections scoring at least ``draw_score_thresh`` that also survive a
    class-agnostic NMS at IoU ``draw_nms_iou`` (``None``: no such NMS), so one object shows one box
    rather than a stack of near-identical ones of different classes; ``results.json`` keeps every
    detection. Every process writes the images of its own batches."""

    def __init__(self, draw_score_thresh: float = DRAW_SCORE_THRESH, draw_nms_iou: float | None = DRAW_NMS_IOU,
                 output_dir: str | os.PathLike | None = None) -> None:
        super().__init__(output_dir)
        self.draw_score_thresh = draw_score_thresh
        self.draw_nms_iou = draw_nms_iou

    def shown(self, boxes: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Indices of the detections to draw (``boxes [N, 4]`` xyxy, ``scores [N]``), best first."""
        return shown_detections(boxes, scores, self.draw_score_thresh, self.draw_nms_iou)

    def write_images(self, prediction: Any, class_names: list[str], folder: Path) -> None:
        for p in prediction:
            path = Path(p["path"])
            image = render_detections(read_image(path, 3), p["boxes"], p["scores"], p["labels"], class_names,
                                      self.draw_score_thresh, self.draw_nms_iou, p.get("segmentation"),
                                      keypoints=p.get("keypoints"), skeleton=p.get("skeleton"))
            Image.fromarray(image).save(folder / f"{int(p['image_id']):06d}_{path.stem}.png")


def task_callbacks() -> list[Callback]:
    """The detection task's writers: COCO results, drawings, the diagnostics report."""
    from .detection_diagnostics import DetectionDiagnosticsWriter

    return [CocoResultsWriter(), DetectionDrawingWriter(), DetectionDiagnosticsWriter()]
