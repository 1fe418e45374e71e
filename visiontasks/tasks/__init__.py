"""LightningModules: one per task family, all on :class:`BaseTask`.

The task classes are imported on first use (PEP 562), so a classification run never imports the
detection or segmentation modules; ``from visiontasks.tasks import DetectionTask`` works as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from visiontasks._lazy import lazy_attributes

if TYPE_CHECKING:
    from .base import BaseTask
    from .classification import ClassificationTask
    from .detection import DetectionTask
    from .instance_segmentation import InstanceSegmentationTask
    from .keypoint_detection import KeypointDetectionTask
    from .segmentation import SegmentationTask

# The one list of built-in task classes (name -> submodule): the CLI's bare names (``--model
# DetectionTask``) and old checkpoints' class paths are resolved from it; every task class, built-in or
# not, registers itself in ``BaseTask.registry`` when its module is imported.
_LAZY = {"BaseTask": "base", "ClassificationTask": "classification", "DetectionTask": "detection",
         "InstanceSegmentationTask": "instance_segmentation", "KeypointDetectionTask": "keypoint_detection",
         "SegmentationTask": "segmentation"}
__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
