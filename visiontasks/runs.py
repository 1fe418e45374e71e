"""Where a run's files go: one place for tasks, output callbacks and commands (no Lightning import
beyond the trainer it is handed)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from visiontasks.errors import MissingFileError


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


_VERSION_ENV = "VISIONTASKS_RUN_VERSION"


def run_version(folder: Path) -> str:
    """The run folder's version (``version_N``, the next free N), shared by all loggers so that logs,
    checkpoints and figures land in one folder. DDP child processes (``LOCAL_RANK`` > 0, started by
    rank 0 after it chose) inherit rank 0's choice through the environment."""
    if int(os.environ.get("LOCAL_RANK", "0")) > 0 and os.environ.get(_VERSION_ENV):
        return os.environ[_VERSION_ENV]
    taken = {p.name for p in folder.glob("version_*")} if folder.is_dir() else set()
    n = 0
    while f"version_{n}" in taken:
        n += 1
    os.environ[_VERSION_ENV] = f"version_{n}"
    return f"version_{n}"


def resolve_checkpoint(folder: Path, which: str) -> tuple[str, str]:
    """``(version, path)`` of the newest run's ``last.ckpt`` or best checkpoint under ``folder``."""
    runs = sorted(
        (p for p in folder.glob("version_*") if (p / "checkpoints" / "last.ckpt").is_file()),
        key=lambda p: int(p.name.split("_")[1]) if p.name.split("_")[1].isdigit() else -1,
    )
    if not runs:
        raise MissingFileError(
            f"--ckpt_path {which}: no run with checkpoints/last.ckpt under {folder}; train first "
            "(visiontasks fit) or give a checkpoint file"
        )
    last = runs[-1] / "checkpoints" / "last.ckpt"
    if which == "last":
        return runs[-1].name, str(last)
    import torch

    state = torch.load(last, map_location="cpu", weights_only=False).get("callbacks", {})
    for key, value in state.items():
        if key.startswith("ModelCheckpoint") and value.get("best_model_path"):
            best = Path(value["best_model_path"])
            if best.is_file():
                return runs[-1].name, str(best)
    return runs[-1].name, str(last)


def config_stem(cfg: Any) -> str | None:
    """The stem of the last ``--config`` file given (the run's default name), or ``None``."""
    paths = cfg.get("config") or []
    for p in reversed(paths):
        s = str(p)
        if s:
            return Path(s).stem
    return None
