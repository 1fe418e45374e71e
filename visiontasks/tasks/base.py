"""The template LightningModule every task subclasses (after torchgeo's ``BaseTask``).

It owns what all tasks share: optimizer and scheduler from the config (LightningCLI dependency
injection: ``optimizer`` / ``lr_scheduler`` are callables taking the parameters / the optimizer),
the metric monitored by checkpointing and plateau schedulers, and hyper-parameter saving. Subclasses
build their model in ``configure_model`` and implement the steps; they know nothing of a backbone's
internals beyond its ``feature_info``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import lightning.pytorch as pl
import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CyclicLR, OneCycleLR, ReduceLROnPlateau

from visiontasks.schedulers import BudgetScheduler, trainer_budget

OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]
SchedulerFactory = Callable[[Optimizer], Any]


def default_optimizer(params: Iterable[nn.Parameter]) -> Optimizer:
    """AdamW, lr 1e-3, weight decay 1e-4."""
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)


class BaseTask(pl.LightningModule):
    """Shared plumbing. ``monitor`` names a logged metric (e.g. ``"val/acc"``), ``monitor_mode`` is
    ``"max"`` or ``"min"``; both feed checkpointing and ``ReduceLROnPlateau``."""

    monitor: str = "val/loss"
    monitor_mode: str = "min"

    def __init__(
        self,
        num_classes: int,
        optimizer: OptimizerFactory | None = None,
        lr_scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.class_names: list[str] = [str(i) for i in range(num_classes)]
        self.optimizer_factory = optimizer or default_optimizer
        self.scheduler_factory = lr_scheduler

    # -- classes: carried from the datamodule, checked, and saved in checkpoints ------------------
    def setup(self, stage: str) -> None:
        """Take the class names from the datamodule (its ``setup`` runs first) and check the count."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        names = getattr(datamodule, "class_names", None)
        if names is not None:
            if len(names) != self.num_classes:
                raise ValueError(
                    f"model.num_classes={self.num_classes} but the data has {len(names)} classes "
                    f"({', '.join(map(str, names[:10]))}{', ...' if len(names) > 10 else ''}); "
                    "make them agree in the config"
                )
            self.class_names = [str(n) for n in names]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["class_names"] = list(self.class_names)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.class_names = list(checkpoint.get("class_names", self.class_names))

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"{type(self).__name__} has no trainable parameters (all frozen?)")
        optimizer = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        if isinstance(scheduler, BudgetScheduler) and self._trainer is not None:
            scheduler.set_budget(**trainer_budget(self.trainer))  # the run's steps and max_time
        # per-batch schedulers (their total_steps / cycle lengths count batches) step every batch
        interval = "step" if isinstance(scheduler, (OneCycleLR, CyclicLR, BudgetScheduler)) else "epoch"
        config: dict[str, Any] = {"scheduler": scheduler, "interval": interval}
        if isinstance(scheduler, ReduceLROnPlateau):
            if scheduler.mode != self.monitor_mode:
                raise ValueError(
                    f"ReduceLROnPlateau mode={scheduler.mode!r} but {self.monitor} is to be "
                    f"{self.monitor_mode}imised; set lr_scheduler.init_args.mode: {self.monitor_mode}"
                )
            config["monitor"] = self.monitor
        return {"optimizer": optimizer, "lr_scheduler": config}

    def run_dir(self) -> Path:
        """The run folder: the logger's version folder (``runs/NAME/version_N``) when logging,
        else the trainer's ``default_root_dir``. Checkpoints, metrics, figures and predictions go
        under it."""
        trainer = self.trainer
        # Not ``trainer.log_dir``: that property broadcasts (a collective call), and this method is
        # called from rank 0 alone, e.g. to save a figure; it would deadlock under DDP.
        logger = trainer.logger
        log_dir = getattr(logger, "log_dir", None) if logger is not None else None
        path = Path(log_dir) if log_dir else Path(trainer.default_root_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def prediction_dir(self) -> Path:
        """``<run folder>/predictions``: where ``predict`` writes its files."""
        path = self.run_dir() / "predictions"
        path.mkdir(parents=True, exist_ok=True)
        return path
