"""LightningModules: one per task family, all on :class:`BaseTask`.

The task classes are imported on first use (PEP 562), so a classification run never imports the
detection or segmentation modules; ``from visiontasks.tasks import DetectionTask`` works as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import BaseTask
    from .classification import ClassificationTask
    from .detection import DetectionTask
    from .segmentation import SegmentationTask

_LAZY = {
    "BaseTask": "base",
    "ClassificationTask": "classification",
    "DetectionTask": "detection",
    "SegmentationTask": "segmentation",
}

__all__ = ["BaseTask", "ClassificationTask", "DetectionTask", "SegmentationTask"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
