"""LightningModules: one per task family, all on :class:`BaseTask`."""

from .base import BaseTask

__all__ = ["BaseTask"]
