"""LightningDataModules, readers per format (registered by name), albumentations presets and
synthetic data. A new format is one reader class registered in its family's registry
(``DETECTION_READERS``, ``SEGMENTATION_READERS``, ``CLASSIFICATION_SOURCES``) and imported by its
package; the datamodules look readers up by their ``format`` (``source``) name.

The datamodules are imported on first use (PEP 562): ``from visiontasks.data import
DetectionDataModule`` works as before, but a classification run never imports the detection or
segmentation packages."""

from __future__ import annotations

from typing import TYPE_CHECKING

from visiontasks._lazy import lazy_attributes

if TYPE_CHECKING:
    from .base import VisionDataModule
    from .classification import ClassificationDataModule
    from .detection import DetectionDataModule
    from .segmentation import SegmentationDataModule

_LAZY = {"VisionDataModule": "base", "ClassificationDataModule": "classification",
         "SegmentationDataModule": "segmentation", "DetectionDataModule": "detection"}
__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
