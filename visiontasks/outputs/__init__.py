"""Files a run writes, as Lightning callbacks: tasks compute, these write (rank-aware).

The CLI attaches :func:`default_callbacks` of its task (unless the config lists a callback of the
same type); with the Python API attach them yourself::

    trainer = pl.Trainer(callbacks=default_callbacks(task))
    trainer.predict(task, datamodule=dm)   # writes <run>/predictions/...

Prediction writers are ``BasePredictionWriter`` s; figures and tables read what the task's epoch end
left in ``stage_results`` / ``stage_logged``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable

from visiontasks._lazy import lazy_attributes

if TYPE_CHECKING:
    from lightning.pytorch import Callback, LightningModule

    from .checkpoint import BestAndLastCheckpoint
    from .classification import CAMWriter, ClassificationPredictionWriter, ConfusionMatrixPlot, MetricsJSONWriter
    from .detection import CocoResultsWriter, DetectionDrawingWriter
    from .detection_diagnostics import DetectionDiagnosticsWriter
    from .segmentation import IoUTableWriter, SegmentationMaskWriter

# name -> submodule; imported on first use (PEP 562), so a classification run never imports the
# detection or segmentation writers (and what they import)
_LAZY = {
    "BestAndLastCheckpoint": "checkpoint",
    "CAMWriter": "classification",
    "ClassificationPredictionWriter": "classification",
    "ConfusionMatrixPlot": "classification",
    "MetricsJSONWriter": "classification",
    "CocoResultsWriter": "detection",
    "DetectionDrawingWriter": "detection",
    "DetectionDiagnosticsWriter": "detection_diagnostics",
    "IoUTableWriter": "segmentation",
    "SegmentationMaskWriter": "segmentation",
}

__all__ = [
    "BestAndLastCheckpoint",
    "CAMWriter",
    "ClassificationPredictionWriter",
    "CocoResultsWriter",
    "ConfusionMatrixPlot",
    "DetectionDiagnosticsWriter",
    "DetectionDrawingWriter",
    "IoUTableWriter",
    "MetricsJSONWriter",
    "SegmentationMaskWriter",
    "default_callbacks",
    "register_default_callbacks",
]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


_DEFAULTS: dict[type, Callable[[], list[Callback]]] = {}


def register_default_callbacks(task_class: type, factory: Callable[[], list[Callback]]) -> None:
    """Make ``factory()`` the output callbacks of ``task_class`` (and its subclasses)."""
    _DEFAULTS[task_class] = factory


def default_callbacks(task: LightningModule) -> list[Callback]:
    """Fresh output callbacks for ``task``, chosen by its type: the most derived class that was
    registered with :func:`register_default_callbacks` or declares ``output_callbacks`` (a dotted
    path to a factory, imported only now) wins; ``[]`` for a module of neither."""
    for cls in type(task).__mro__:
        if cls in _DEFAULTS:
            return _DEFAULTS[cls]()
        declared = vars(cls).get("output_callbacks")
        if declared:
            module, _, name = declared.rpartition(".")
            return getattr(importlib.import_module(module), name)()
    return []
