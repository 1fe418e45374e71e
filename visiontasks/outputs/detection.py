"""Detection outputs: COCO results JSON and PNGs with the boxes drawn."""

from __future__ import annotations

import colorsys
import json
import os
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image
from torchvision.utils import draw_bounding_boxes

from visiontasks.data.io import read_image

from .common import PerImageWriter, gather_rows, output_dir, write_text_atomic


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
    every detection. Under DDP the entries of all processes are gathered (an image repeated by the
    distributed sampler counts once) and rank 0 writes."""

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
            for b, s, c in zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist()):
                self._results.append({
                    "image_id": int(p["image_id"]), "category_id": self._ids[c],
                    "bbox": [round(b[0], 2), round(b[1], 2), round(b[2] - b[0], 2), round(b[3] - b[1], 2)],
                    "score": round(float(s), 5),
                })

    def write_on_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, predictions: Sequence[Any],
                           batch_indices: Sequence[Any]) -> None:
        results = gather_rows(self._results, "image_id")
        self._results = []
        if trainer.is_global_zero:
            write_text_atomic(output_dir(trainer, self.output_dir) / "results.json", json.dumps(results))


def _palette(n: int) -> list[tuple[int, int, int]]:
    return [tuple(int(255 * v) for v in colorsys.hsv_to_rgb(i / max(n, 1), 0.85, 1.0)) for i in range(n)]


class DetectionDrawingWriter(PerImageWriter):
    """One PNG per image, ``<image_id:06d>_<file stem>.png`` in ``output_dir`` (default: the run's
    ``predictions`` folder): the image file with the detections scoring at least
    ``draw_score_thresh`` drawn (class name and score; one colour per class). Every process writes
    the images of its own batches."""

    def __init__(self, draw_score_thresh: float = 0.3, output_dir: str | os.PathLike | None = None) -> None:
        super().__init__(output_dir)
        self.draw_score_thresh = draw_score_thresh

    def write_images(self, prediction: Any, class_names: list[str], folder: Path) -> None:
        names = class_names
        colours = _palette(len(names))
        for p in prediction:
            path = Path(p["path"])
            image = torch.from_numpy(read_image(path).copy()).permute(2, 0, 1).contiguous()
            shown = p["scores"] >= self.draw_score_thresh
            if shown.any():
                boxes, scores, labels = p["boxes"][shown].cpu(), p["scores"][shown].tolist(), p["labels"][shown].tolist()
                text = [f"{names[c]} {s:.2f}" for c, s in zip(labels, scores)]
                width = max(1, round(min(image.shape[-2:]) / 200))
                image = draw_bounding_boxes(image, boxes, labels=text, colors=[colours[c] for c in labels], width=width)
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{int(p['image_id']):06d}_{path.stem}.png")
