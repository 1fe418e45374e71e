"""LightningModules: one per task family, all on :class:`BaseTask`."""

from .base import BaseTask
from .classification import ClassificationTask
from .segmentation import SegmentationTask  # noqa: F401

__all__ = ["BaseTask", "ClassificationTask"]
from .detection import DetectionTask  # noqa: F401
