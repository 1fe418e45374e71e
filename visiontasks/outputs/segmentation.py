"""Segmentation outputs: index-mask and overlay PNGs, the per-class IoU table of ``test``."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from PIL import Image

from visiontasks.data.io import read_image
from visiontasks.metrics.segmentation import format_iou_table
from visiontasks.ops import mask_to_original
from visiontasks.runs import run_dir

from .common import PerImageWriter, write_text_atomic
from .drawing import render_segmentation, save_mask_png


class SegmentationMaskWriter(PerImageWriter):
    """Per image, in ``output_dir`` (default: the run's ``predictions`` folder):
    ``<stem>_mask.png``, the class indices at the image file's size (a palette PNG; 16-bit
    greyscale beyond 256 classes), and ``<stem>_overlay.png``, the classes drawn over the image
    (opacity ``overlay_alpha``; a background class 0 is not drawn) with a legend of the classes
    present in its top-left corner. Colours: VOC's for classes >= 1; a class 0 that is a real class
    (e.g. "sky") gets a visible colour, not VOC's black (:func:`~visiontasks.outputs.drawing.mask_colour`;
    the mask PNG's palette is the same, its pixel values stay the class indices). Reads ``predict_step``'s
    ``[{"id": path, "mask": [H, W]}]``; a mask not at the file's size is resized to it (nearest)."""

    def __init__(self, overlay_alpha: float = 0.5, output_dir: str | os.PathLike | None = None) -> None:
        super().__init__(output_dir)
        self.overlay_alpha = overlay_alpha

    def write_images(self, prediction: Any, class_names: list[str], folder: Path) -> None:
        for item in prediction:
            self._write(Path(item["id"]), item["mask"].cpu(), class_names, folder)

    def _write(self, path: Path, mask_t: torch.Tensor, names: list[str], folder: Path) -> None:
        image = read_image(path, 3)  # the original pixels, for the overlay
        if tuple(mask_t.shape) != image.shape[:2]:
            mask_t = mask_to_original(mask_t, mask_t.shape, image.shape[:2])
        mask = mask_t.numpy()
        save_mask_png(folder / f"{path.stem}_mask.png", mask, names)
        overlay = render_segmentation(image, mask, names, self.overlay_alpha)
        Image.fromarray(overlay).save(folder / f"{path.stem}_overlay.png")


class IoUTableWriter(Callback):
    """After ``test`` (rank 0): prints the per-class IoU table and writes ``<run>/test_iou.csv``
    (``class, iou, accuracy, pixels`` per class, then the means). Reads
    ``pl_module.stage_results["test"]`` (the segmentation metric's scores and confusion matrix)."""

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        scores = getattr(pl_module, "stage_results", {}).get("test")
        if not trainer.is_global_zero or scores is None:
            return
        names = list(pl_module.class_names)
        hp = pl_module.hparams
        title = f"test, {hp['model']} on {hp['backbone']}" if {"model", "backbone"} <= set(hp) else "test"
        print(f"\nPer-class IoU ({title}):\n{format_iou_table(names, scores)}\n")
        text = io.StringIO(newline="")
        w = csv.writer(text)
        w.writerow(["class", "iou", "accuracy", "pixels"])
        gt = scores["confmat"].sum(dim=1).tolist()
        for row in zip(names, scores["iou"].tolist(), scores["class_acc"].tolist(), gt):
            w.writerow(row)
        w.writerow(["mean", float(scores["mIoU"]), float(scores["mean_class_acc"]), sum(gt)])
        write_text_atomic(run_dir(trainer) / "test_iou.csv", text.getvalue())


def task_callbacks() -> list[Callback]:
    """The segmentation task's writers: mask and overlay PNGs, the per-class IoU table."""
    return [SegmentationMaskWriter(), IoUTableWriter()]
