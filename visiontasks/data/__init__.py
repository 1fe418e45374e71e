"""LightningDataModules, readers per format (registered by name), albumentations presets and
synthetic data. A new format is one reader class registered in its family's registry
(``DETECTION_READERS``, ``SEGMENTATION_READERS``, ``CLASSIFICATION_SOURCES``) and imported by its
package; the datamodules look readers up by their ``format`` (``source``) name.

The datamodules are imported on first use (PEP 562): ``from visiontasks.data import
DetectionDataModule`` works as before, but a classification run never imports the detection or
segmentation packages."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import VisionDataModule
    from .classification import ClassificationDataModule
    from .detection import DetectionDataModule
    from .segmentation import SegmentationDataModule

_LAZY = {
    "VisionDataModule": "base",
    "ClassificationDataModule": "classification",
    "SegmentationDataModule": "segmentation",
    "DetectionDataModule": "detection",
}

__all__ = ["ClassificationDataModule", "DetectionDataModule", "SegmentationDataModule", "VisionDataModule"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
