"""LightningModules: one per task family, all on :class:`BaseTask`."""

from .base import BaseTask
from .classification import ClassificationTask

__all__ = ["BaseTask", "ClassificationTask"]
