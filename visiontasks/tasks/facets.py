"""What a task declares for the layers above it (predictor, export, outputs, CLI), so that none of
them keeps a table of tasks or branches on a family name.

Every facet is a class attribute, inherited (``InstanceSegmentationTask`` is a ``DetectionTask`` in
all of them but its writers' contents) and, where it names code outside ``tasks/``, a dotted import
path: a task never imports ``visiontasks.data`` or ``visiontasks.outputs``; whoever reads the facet
imports it (:func:`resolve`), only when used, so a classification run imports no detection module.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from visiontasks.errors import InvalidInputError


class TaskFacets:
    """The declarations (``None``: the task cannot do that) and the registry of task classes.

    - ``family``: the name of the batch layout ``predict_step`` reads (``classification``,
      ``segmentation``, ``detection``), written in export JSONs and shown by ``Predictor``.
    - ``result_type``: a :class:`visiontasks.results.Result` class; ``from_prediction(prediction,
      class_names, image_input)`` turns one image's ``predict_step`` dict into it.
    - ``prediction_data``: a module with ``prediction_dataset(images, prep)`` (a dataset over any
      images through the checkpoint's preprocessing) and ``prediction_collate`` (its batching).
    - ``output_callbacks``: a factory ``() -> list[Callback]`` of the task's file writers.
    - ``export_wrapper``: an ``nn.Module`` class of ``visiontasks.export.wrappers`` with
      ``for_task(task, prep, dynamic)``, ``output_names`` and the description of its outputs.
    """

    family: ClassVar[str | None] = None
    result_type: ClassVar[str | None] = None
    prediction_data: ClassVar[str | None] = None
    output_callbacks: ClassVar[str | None] = None
    export_wrapper: ClassVar[str | None] = None
    registry: ClassVar[dict[str, type]] = {}  # "module.Class" -> every task class imported so far

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        TaskFacets.registry[f"{cls.__module__}.{cls.__qualname__}"] = cls


def resolve(path: str) -> Any:
    """The object a dotted path names (``"pkg.module.name"``; a module when the whole path is one)."""
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as err:
        if err.name != path:
            raise
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def enable_cam(task: Any, on: bool, cam_class: str | None = None) -> None:
    """Ask ``task``'s ``predict_step`` for class activation maps (``cam_class``, a class name, implies
    ``on``) through its ``enable_cam`` method; a task without one is refused in one line when asked."""
    wants = bool(on) or cam_class is not None
    method = getattr(task, "enable_cam", None)
    if method is None:
        if wants:
            raise InvalidInputError(f"{type(task).__name__} has no class activation maps (--cam and --cam_class "
                                    "are for classification checkpoints)")
        return
    method(wants, cam_class)
