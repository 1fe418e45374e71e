"""Where a run's files go: one place for tasks, output callbacks and commands (no Lightning import
beyond the trainer it is handed)."""

from __future__ import annotations

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
