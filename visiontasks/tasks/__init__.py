"""LightningModules: one per task family, all on :class:`BaseTask`."""

from .base import BaseTask
from .classification import ClassificationTask
from .detection import DetectionTask
from .segmentation import SegmentationTask

__all__ = ["BaseTask", "ClassificationTask", "DetectionTask", "SegmentationTask"]
