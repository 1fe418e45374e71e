"""Timing training steps with a Lightning callback (read by ``visiontasks benchmark``)."""

from __future__ import annotations

import time
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class StepTimer(Callback):
    """Wall seconds of each training step, ``on_train_batch_start`` to ``on_train_batch_end``
    (forward, backward, optimizer step; CUDA synchronised on a GPU), leaving out the first
    ``warmup`` steps. ``times``: one float per timed step."""

    def __init__(self, warmup: int = 1) -> None:
        self.warmup = warmup
        self.times: list[float] = []
        self._steps, self._start = 0, 0.0

    @staticmethod
    def _sync(pl_module: LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._sync(pl_module)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._sync(pl_module)
        self._steps += 1
        if self._steps > self.warmup:
            self.times.append(time.perf_counter() - self._start)
