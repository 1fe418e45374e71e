"""Where a run's files go: one place for tasks, output callbacks and commands (no Lightning import
beyond the trainer it is handed)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def run_dir(trainer: Any) -> Path:
    """The run folder (created): the logger's version folder (``runs/NAME/version_N``, or
    ``version_N/<subcommand>`` for validate/test/predict from the CLI) when logging, else the
    trainer's ``default_root_dir``. Checkpoints, metrics, figures and predictions go under it."""
    # Not ``trainer.log_dir``: that property broadcasts (a collective call), and this is called from
    # rank 0 alone, e.g. to save a figure; it would deadlock under DDP.
    logger = trainer.logger
    log_dir = getattr(logger, "log_dir", None) if logger is not None else None
    path = Path(log_dir) if log_dir else Path(trainer.default_root_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def prediction_dir(trainer: Any) -> Path:
    """``<run folder>/predictions`` (created): where ``predict``'s files are written."""
    path = run_dir(trainer) / "predictions"
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_first_process() -> bool:
    """Whether this process is global rank 0 by the launcher's environment (torchrun's ``RANK``,
    SLURM's ``SLURM_PROCID``, Lightning's ``LOCAL_RANK``/``NODE_RANK`` for the processes it starts),
    before any process group exists. A single process is the first."""
    return all(os.environ.get(key, "0") in ("", "0") for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"))


def agree_run_folder(trainer: Any) -> None:
    """Make every process use rank 0's run folder: each logger's version is broadcast from rank 0
    (a collective call: all processes call it, once the process group exists, e.g. in a callback's
    ``setup``).

    Each process of a run started from outside (``torchrun``, SLURM's ``srun``) picks its
    ``version_N`` from what it finds on disk, at a different moment: a folder made in between by
    another run gives them different folders. Lightning's own DDP children inherit rank 0's choice
    through the environment; these do not, so the choice is agreed here."""
    if getattr(trainer, "world_size", 1) <= 1:
        return
    for logger in trainer.loggers:
        if hasattr(logger, "_version"):  # CSVLogger, TensorBoardLogger: version (int or str) is lazy
            logger._version = trainer.strategy.broadcast(logger.version, src=0)
