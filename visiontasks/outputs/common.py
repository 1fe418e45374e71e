"""What the output callbacks share: the output folder, gathering rows from every process, writing
a file atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Hashable

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from visiontasks.runs import prediction_dir


def output_dir(trainer: Any, given: str | os.PathLike | None) -> Path:
    """``given`` (created) or the run's ``predictions`` folder (:func:`visiontasks.runs.prediction_dir`)."""
    if given is None:
        return prediction_dir(trainer)
    path = Path(given)
    path.mkdir(parents=True, exist_ok=True)
    return path


def gather_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Every process's ``rows`` (a collective call under DDP: all ranks must call it), rank 0's first.
    The distributed sampler repeats samples to even out the ranks: rows whose ``key`` value an
    earlier rank already gave are dropped (all rows of one image come from one rank's batch)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return rows
    parts: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, rows)
    out: list[dict[str, Any]] = []
    seen: set[Hashable] = set()
    for part in parts:
        keys = {r[key] for r in part} - seen
        out += [r for r in part if r[key] in keys]
        seen |= keys
    return out


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


class PerImageWriter(BasePredictionWriter):
    """A prediction writer of one or more files per image, written as each batch ends into
    ``output_dir`` (default: the run's ``predictions`` folder); every process writes its own batches.
    Subclasses implement :meth:`write_images`."""

    def __init__(self, output_dir: str | os.PathLike | None = None) -> None:
        super().__init__("batch")
        self.output_dir = output_dir

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Any,
                           batch_indices: Any, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        self.write_images(prediction, list(pl_module.class_names), output_dir(trainer, self.output_dir))

    def write_images(self, prediction: Any, class_names: list[str], folder: Path) -> None:
        """Write the files of one batch's ``predict_step`` output."""
        raise NotImplementedError
