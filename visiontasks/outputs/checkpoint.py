"""The run's checkpoints: the best one on the task's monitored metric, and ``last.ckpt``.

:class:`BestAndLastCheckpoint` is Lightning's :class:`~lightning.pytorch.callbacks.ModelCheckpoint`
with one change: ``last.ckpt`` no longer depends on the metric. Lightning (2.6) writes ``last.ckpt``
only right after it wrote a top-k checkpoint, so a run whose metric stopped improving kept
``last.ckpt`` at its best epoch and ``--ckpt_path last`` went back there. Here

- ``best-epoch{E}-step{S}.ckpt`` follows the monitored metric, written when validation improves it
  (Lightning's top-k logic, unchanged: ``save_top_k=1``);
- ``last.ckpt`` is written at the end of every training epoch (also an epoch cut short by
  ``max_steps``, ``max_time`` or early stopping), once more at the end of fit if the last step was
  not saved yet, and on Ctrl-C / SIGTERM in a single-process run.

Writes go to ``<name>.part`` in the same folder and are moved over the file with ``os.replace``,
so a killed run never leaves half a checkpoint. Under DDP every rank runs the same hooks, rank 0
writes, and the folder is the one rank 0 chose (Lightning broadcasts it in ``setup``).

Resuming from ``last.ckpt`` restores epoch, global step, optimizer and schedulers through Lightning;
the one step Lightning would lose (``ReduceLROnPlateau``'s step after the saved epoch) is carried in
this callback's state and made when the resumed fit starts.
"""

from __future__ import annotations

import os
from typing import Any
from weakref import proxy

import lightning.pytorch as pl
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException


class BestAndLastCheckpoint(ModelCheckpoint):
    """Best checkpoint on ``monitor`` (``mode`` ``"min"``/``"max"``) plus an always-current ``last.ckpt``.

    Args:
        monitor: logged metric to rank checkpoints by (e.g. ``"val/acc"``); ``None`` keeps the newest.
        mode: ``"max"`` when a larger ``monitor`` is better, else ``"min"``.
        filename: name pattern of the best checkpoint (Lightning's format keys: ``{epoch}``, ``{step}``).
        dirpath: folder; default ``<run folder>/checkpoints`` (Lightning's choice from the logger).
        save_top_k: how many best checkpoints to keep.
        **kwargs: other :class:`ModelCheckpoint` arguments (``verbose``, ``save_weights_only``, ...).

    The state key stays ``ModelCheckpoint{...}``: runs written before this class existed resume into
    it, and ``visiontasks ... --ckpt_path best`` finds ``best_model_path`` under that key.
    """

    def __init__(
        self,
        monitor: str | None = None,
        mode: str = "min",
        filename: str = "best-epoch{epoch}-step{step}",
        dirpath: str | None = None,
        save_top_k: int = 1,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("auto_insert_metric_name", False)
        # last.ckpt keeps its name across resumes (no last-v1.ckpt beside a stale last.ckpt)
        kwargs.setdefault("enable_version_counter", False)
        super().__init__(dirpath=dirpath, filename=filename, monitor=monitor, mode=mode,
                         save_top_k=save_top_k, save_last=True, **kwargs)
        self._last_written_step = 0  # global step of the newest last.ckpt (0: nothing trained yet)
        self._plateau_due: list[float | None] | None = None  # stored with an epoch-end last.ckpt
        self._plateau_replay: list[float | None] | None = None  # read back from it on resume

    @property
    def state_key(self) -> str:
        return "ModelCheckpoint" + super().state_key[len(type(self).__qualname__):]

    # -- when last.ckpt is written --------------------------------------------------------------------
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)  # top-k when no validation decides it
        self._write_last(trainer, epoch_end=True)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_last(trainer)  # no-op when the last epoch end already wrote this step

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        # Ctrl-C and SIGTERM stop a healthy run: keep its progress. Any other exception may come from
        # a broken step (NaN weights, a half-applied update), so the last good last.ckpt is kept.
        # Under DDP the other ranks may not reach the write's collective calls: no write there.
        if isinstance(exception, (KeyboardInterrupt, SIGTERMException)) and trainer.world_size == 1:
            self._write_last(trainer)

    def _save_last_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict[str, Any]) -> None:
        """Lightning calls this only after a top-k save; :meth:`_write_last` writes last.ckpt instead."""

    def _write_last(self, trainer: pl.Trainer, epoch_end: bool = False) -> None:
        if (
            trainer.fast_dev_run
            or trainer.state.fn != TrainerFn.FITTING
            or trainer.sanity_checking
            or trainer.global_step == self._last_written_step
        ):
            return
        self._plateau_due = _plateau_steps_due(trainer) if epoch_end else None
        try:
            ModelCheckpoint._save_last_checkpoint(self, trainer, self._monitor_candidates(trainer))
        finally:
            self._plateau_due = None
        self._last_written_step = trainer.global_step

    # -- atomic writes ----------------------------------------------------------------------------------
    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        if not _is_local_file_protocol(filepath):  # object stores replace whole objects already
            super()._save_checkpoint(trainer, filepath)
            return
        part = f"{filepath}.part"
        trainer.save_checkpoint(part, self.save_weights_only)  # all ranks; rank 0 writes
        if trainer.is_global_zero:
            os.replace(part, filepath)
        trainer.strategy.barrier("BestAndLastCheckpoint._save_checkpoint")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))

    # -- exact resume of plateau schedulers -------------------------------------------------------------
    # Lightning steps ReduceLROnPlateau after every on_train_epoch_end hook, so an epoch-end checkpoint
    # holds the scheduler before that epoch's step, and a resumed fit never makes it (it starts the
    # next epoch). The metric values of that step travel with last.ckpt and are applied on resume.
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self._plateau_due is not None:
            state["plateau_steps_due"] = self._plateau_due
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._plateau_replay = state_dict.get("plateau_steps_due")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        due, self._plateau_replay = self._plateau_replay, None
        if not due or len(due) != len(trainer.lr_scheduler_configs):
            return
        for config, value in zip(trainer.lr_scheduler_configs, due):
            if value is not None and config.reduce_on_plateau:
                pl_module.lr_scheduler_step(config.scheduler, value)


def _plateau_steps_due(trainer: pl.Trainer) -> list[float | None] | None:
    """The metric each ``ReduceLROnPlateau`` will step on right after this epoch end (``None``: no
    step), mirroring the fit loop (``FitLoop.on_advance_end`` / ``_update_learning_rates``)."""
    loop = trainer.fit_loop
    if (
        not trainer.lr_scheduler_configs
        or not trainer.lightning_module.automatic_optimization
        or loop.restarting
        or not loop.epoch_loop._num_ready_batches_reached()
    ):
        return None
    due: list[float | None] = []
    for config in trainer.lr_scheduler_configs:
        value = None
        if (
            config.reduce_on_plateau
            and config.interval == "epoch"
            and (trainer.current_epoch + 1) % config.frequency == 0
            and config.monitor is not None
        ):
            metric = trainer.callback_metrics.get(config.monitor)
            value = None if metric is None else float(metric)
        due.append(value)
    return due if any(v is not None for v in due) else None
