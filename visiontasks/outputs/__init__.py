"""Files a run writes, as Lightning callbacks: tasks compute, these write (rank-aware).

The CLI attaches :func:`default_callbacks` of its task (unless the config lists a callback of the
same type); with the Python API attach them yourself::

    trainer = pl.Trainer(callbacks=default_callbacks(task))
    trainer.predict(task, datamodule=dm)   # writes <run>/predictions/...

Prediction writers are ``BasePredictionWriter`` s; figures and tables read what the task's epoch end
left in ``stage_results`` / ``stage_logged``.
"""

from __future__ import annotations

from typing import Callable

from lightning.pytorch import Callback, LightningModule

from .checkpoint import BestAndLastCheckpoint
from .classification import ClassificationPredictionWriter, ConfusionMatrixPlot, MetricsJSONWriter
from .detection import CocoResultsWriter, DetectionDrawingWriter
from .segmentation import IoUTableWriter, SegmentationMaskWriter

__all__ = [
    "BestAndLastCheckpoint",
    "ClassificationPredictionWriter",
    "CocoResultsWriter",
    "ConfusionMatrixPlot",
    "DetectionDrawingWriter",
    "IoUTableWriter",
    "MetricsJSONWriter",
    "SegmentationMaskWriter",
    "default_callbacks",
    "register_default_callbacks",
]

_DEFAULTS: dict[type, Callable[[], list[Callback]]] = {}


def register_default_callbacks(task_class: type, factory: Callable[[], list[Callback]]) -> None:
    """Make ``factory()`` the output callbacks of ``task_class`` (and its subclasses)."""
    _DEFAULTS[task_class] = factory


def default_callbacks(task: LightningModule) -> list[Callback]:
    """Fresh output callbacks for ``task``, chosen by its type (the most derived registered class
    wins); ``[]`` for a module of no registered type."""
    for cls in type(task).__mro__:
        if cls in _DEFAULTS:
            return _DEFAULTS[cls]()
    return []


def _register_builtin() -> None:
    from visiontasks.tasks import ClassificationTask, DetectionTask, SegmentationTask

    register_default_callbacks(
        ClassificationTask, lambda: [ClassificationPredictionWriter(), ConfusionMatrixPlot(), MetricsJSONWriter()]
    )
    register_default_callbacks(DetectionTask, lambda: [CocoResultsWriter(), DetectionDrawingWriter()])
    register_default_callbacks(SegmentationTask, lambda: [SegmentationMaskWriter(), IoUTableWriter()])


_register_builtin()
