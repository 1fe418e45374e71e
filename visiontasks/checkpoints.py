"""Reading visiontasks checkpoints: what a file is, which task made it, with errors a person can act on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from visiontasks.errors import InvalidInputError, MissingFileError


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict of a Lightning ``.ckpt`` file, on the CPU (tensors memory-mapped).

    Raises :class:`MissingFileError` when there is no such file and :class:`InvalidInputError`
    ("X is not a Lightning checkpoint") for anything else: a plain state_dict, a text file, a
    truncated download."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint {path} does not exist")
    try:
        ckpt = _load(path)
    except Exception:  # noqa: BLE001 - any failure to unpickle means it is not a checkpoint
        raise InvalidInputError(f"{path} is not a Lightning checkpoint (torch.load cannot read it)") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "pytorch-lightning_version" not in ckpt:
        hint = ""
        if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            hint = " (it holds a plain state_dict)"
        raise InvalidInputError(f"{path} is not a Lightning checkpoint{hint}")
    return ckpt


def _load(path: Path) -> Any:
    try:  # memory-mapped: only the header is read now
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as err:
        if "mmap" not in str(err):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)  # the legacy (non-zip) format


def checkpoint_task_class(ckpt: dict[str, Any]) -> str | None:
    """The class path of the task that wrote ``ckpt`` (LightningCLI stores it in the hyper-parameters
    as ``_class_path``), or ``None`` when the checkpoint does not say."""
    hparams = ckpt.get("hyper_parameters") or {}
    value = hparams.get("_class_path")
    return str(value) if value else None


def check_checkpoint_for(path: str | Path, class_path: str) -> dict[str, Any]:
    """Read ``path`` and check that the task class ``class_path`` can load it: a checkpoint written
    by another task class is refused naming both (LightningCLI would otherwise silently replace the
    configured model with the checkpoint's class)."""
    ckpt = read_checkpoint(path)
    theirs = checkpoint_task_class(ckpt)
    if theirs is not None and _short(theirs) != _short(class_path):
        raise InvalidInputError(
            f"{path} was written by {_short(theirs)}, but the config's model is {_short(class_path)}; give a "
            f"checkpoint of a {_short(class_path)} run, or pass this file as model.init_args.backbone_weights to reuse "
            "only its backbone"
        )
    return ckpt


def _short(class_path: str) -> str:
    """``visiontasks.tasks.detection.DetectionTask`` and ``visiontasks.tasks.DetectionTask`` alike."""
    return class_path.rsplit(".", 1)[-1]


def state_dict_of(obj: Any, path: str | Path, what: str = "weights file") -> dict[str, torch.Tensor]:
    """The state_dict in a loaded weights file: ``obj`` itself, or its ``state_dict`` (Lightning) or
    ``model`` (torchvision's training scripts) entry; anything else is refused naming the file."""
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise InvalidInputError(f"{what} {path} holds a {type(obj).__name__}, not a state_dict")
    return obj


def read_state_dict(path: str | Path, what: str = "weights file") -> dict[str, torch.Tensor]:
    """The state_dict of a weights file (a plain state_dict, a Lightning checkpoint, or torchvision's
    ``{"model": ...}``), on the CPU, read with ``weights_only=True`` (no code runs from the file);
    the one reader of weights files for backbones and detectors. A missing or unreadable file is a
    :class:`~visiontasks.errors.UserInputError` naming ``what`` and the file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file name
        raise InvalidInputError(f"cannot read {what} {path}: {err}") from err
    return state_dict_of(obj, path, what)
