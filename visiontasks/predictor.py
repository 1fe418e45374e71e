"""Predict from Python with a trained checkpoint and no config::

    from visiontasks import load_model
    model = load_model("runs/NAME/version_0/checkpoints/best.ckpt")      # any task; device="auto"
    results = model.predict(["a.jpg", "photos/", "imgs/*.png", pil_image, numpy_array, chw_tensor], batch_size=8)
    results[0].boxes, results[0].labels, results[0].names, results[0].scores   # detection
    results[0].save("out.png")                                                 # drawn as the CLI draws

The checkpoint says which task class made it and carries the data's evaluation preprocessing and the
class names (:mod:`visiontasks.preprocessing`); images go through the data family's own evaluation
pipeline (:class:`visiontasks.data.images.ImageFilesDataModule`) and the task's ``predict_step``,
so the results equal ``visiontasks predict`` with the data config. This layer sits above tasks and
data (as the commands do).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Sequence

import torch

from visiontasks.checkpoints import checkpoint_task_class, read_checkpoint
from visiontasks.errors import InvalidInputError
from visiontasks.results import Result
from visiontasks.tasks import _LAZY
from visiontasks.tasks.base import BaseTask
from visiontasks.tasks.facets import enable_cam, resolve

_SEGMENTATION_MODELS = ("fcn32s", "fcn16s", "fcn8s")


def _builtin_path(name: str) -> str:
    """``"DetectionTask" -> "visiontasks.tasks.detection.DetectionTask"`` (from the tasks' ``_LAZY``)."""
    return f"visiontasks.tasks.{_LAZY[name]}.{name}"


def task_class_of(ckpt: dict[str, Any], path: str | Path) -> type[BaseTask]:
    """The task class that wrote ``ckpt``: the ``task_class`` key :class:`BaseTask` saves, else the
    ``_class_path`` LightningCLI saves in the hyper-parameters, else (older checkpoints trained from
    Python) told apart by the hyper-parameters each built-in task alone has."""
    class_path = ckpt.get("task_class") or checkpoint_task_class(ckpt)
    if not class_path:
        hp = ckpt.get("hyper_parameters") or {}
        if "head" in hp:
            class_path = _builtin_path("ClassificationTask")
        elif hp.get("model") in _SEGMENTATION_MODELS:
            class_path = _builtin_path("SegmentationTask")
        elif "model_kwargs" in hp:
            class_path = _builtin_path("DetectionTask")
        else:
            raise InvalidInputError(f"{path} does not say which task made it; is it a visiontasks checkpoint?")
    module_name, _, name = str(class_path).rpartition(".")
    if module_name in ("visiontasks.tasks", "") and name in _LAZY:
        module_name = _builtin_path(name).rpartition(".")[0]
    try:
        cls = BaseTask.registry.get(f"{module_name}.{name}") or getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        raise InvalidInputError(f"{path} was written by {class_path}, which cannot be imported here") from None
    if not (isinstance(cls, type) and issubclass(cls, BaseTask)):
        raise InvalidInputError(f"{path} was written by {class_path}, which is not a visiontasks task")
    return cls


def family_of(task_class: type[BaseTask]) -> str:
    """The ``family`` the task class declares (or inherits): the batch layout its ``predict_step``
    reads."""
    if not task_class.family:
        raise InvalidInputError(f"{task_class.__name__} declares no family: it cannot predict without its data config")
    return task_class.family


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; anything else as ``torch.device`` reads it."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_task(path: str | Path, need_preprocessing: bool = True) -> BaseTask:
    """The task in checkpoint ``path``, on the CPU in eval mode, with its ``preprocessing`` and
    ``class_names``. Backbone or detector weights named in its hyper-parameters are not fetched
    again (the checkpoint holds every tensor). A checkpoint without preprocessing (written before
    checkpoints carried it) raises an error saying what to do, unless ``need_preprocessing`` is
    false (``task.preprocessing`` is then ``None``)."""
    ckpt = read_checkpoint(path)
    cls = task_class_of(ckpt, path)
    if need_preprocessing and not ckpt.get("preprocessing"):
        raise InvalidInputError(
            f"{path} has no evaluation preprocessing (written by an older visiontasks); predict with its "
            "data config (visiontasks predict --config CONFIG --ckpt_path CKPT), or run one validation "
            "(visiontasks validate --config CONFIG --ckpt_path CKPT) and save a new checkpoint from it"
        )
    hp = ckpt.get("hyper_parameters") or {}
    overrides: dict[str, Any] = {}  # the checkpoint's tensors replace named weights: no download, no file
    if "backbone_weights" in hp:
        overrides["backbone_weights"] = None
    if isinstance(hp.get("model_kwargs"), dict) and "weights" in hp["model_kwargs"]:
        overrides["model_kwargs"] = {k: v for k, v in hp["model_kwargs"].items() if k != "weights"}
    # Lightning's loading: the hyper-parameters (through LightningCLI's instantiator when it saved
    # them), on_load_checkpoint (class names, preprocessing), then the state dict, strictly
    task = cls.load_from_checkpoint(path, map_location="cpu", weights_only=True, **overrides)
    return task.eval()


class Predictor:
    """A trained task ready to predict on images (see :func:`load_model`).

    Attributes: ``task`` (the LightningModule, eval mode), ``family``, ``class_names``,
    ``preprocessing``, ``device``."""

    def __init__(self, task: BaseTask, device: str | torch.device = "auto") -> None:
        self.task = task
        self.family = family_of(type(task))
        self.device = resolve_device(device)
        self.task.to(self.device).eval()
        if getattr(getattr(task, "detector", None), "needs_proposals", False):
            raise InvalidInputError(
                f"model {task.hparams.model!r} needs region proposals computed by its datamodule; predict "
                "with its data config (visiontasks predict --config CONFIG --ckpt_path CKPT)"
            )

    @property
    def class_names(self) -> list[str]:
        return list(self.task.class_names)

    @property
    def preprocessing(self) -> Any:
        return self.task.preprocessing

    def datamodule(self, images: Any, batch_size: int = 8, num_workers: int = 0) -> Any:
        """The :class:`~visiontasks.data.images.ImageFilesDataModule` of ``images`` for this model."""
        from visiontasks.data.images import ImageFilesDataModule

        return ImageFilesDataModule(self._facet("prediction_data"), images, self.task.preprocessing, self.class_names,
                                    getattr(self.task, "category_ids", None), batch_size, num_workers)

    def predict(self, images: Any, batch_size: int = 8, num_workers: int = 0, cam: bool = False,
                cam_class: str | None = None) -> list[Result]:
        """One result per image, in order: ``images`` is a file, folder (recursive), glob pattern,
        PIL image, numpy array (``[H, W]``, ``[H, W, 1|3|4]``; RGB order; uint8, uint16 or float
        in [0, 1]), torch tensor (``[3|1, H, W]`` or a batch ``[B, 3|1, H, W]``; RGB; uint8 0..255 or
        float 0..1, on any device), or a list of these. Boxes and masks are in each image's own pixels
        (a tensor's ``H x W``). Batches of ``batch_size``, without gradients (Grad-CAM takes its own).

        ``cam=True`` (classification): each result also carries ``.cam``, the class activation map
        of its predicted class, or of the class named ``cam_class`` (which implies ``cam``), float
        ``[H0, W0]`` in the image's pixels (see :mod:`visiontasks.heads.cam`); ``save`` draws it."""
        from lightning.fabric.utilities.apply_func import move_data_to_device

        enable_cam(self.task, cam, cam_class)  # a task without maps is refused when they are asked for
        if cam or cam_class is not None:
            from visiontasks.heads.cam import class_index

            class_index(cam_class, self.class_names)  # an unknown class name: one line, before any work
        dm = self.datamodule(images, batch_size, num_workers)
        inputs = dm.images
        out: list[Result] = []
        with torch.inference_mode():
            for i, batch in enumerate(dm.loader("predict")):
                pred = self.task.predict_step(move_data_to_device(batch, self.device), i)
                out += self._results(pred, inputs[len(out):])
        return out

    def _facet(self, name: str) -> str:
        value = getattr(type(self.task), name)
        if not value:
            raise InvalidInputError(f"{type(self.task).__name__} declares no {name}: it cannot predict without its "
                                    "data config")
        return value

    def _results(self, pred: Sequence[dict[str, Any]], inputs: Sequence[Any]) -> list[Result]:
        """One result per image of the task's ``result_type`` from ``predict_step``'s list of dicts."""
        result_type = resolve(self._facet("result_type"))
        return [result_type.from_prediction(p, self.class_names, inp) for p, inp in zip(pred, inputs)]

    def __repr__(self) -> str:
        return (f"Predictor({type(self.task).__name__}, {len(self.class_names)} classes, "
                f"{self.task.preprocessing}, device={self.device})")


def load_model(checkpoint: str | Path, device: str | torch.device = "auto") -> Predictor:
    """A :class:`Predictor` for the visiontasks checkpoint ``checkpoint`` (any task), on ``device``
    (``"auto"``: CUDA when available, else the CPU)."""
    return Predictor(load_task(checkpoint), device)
