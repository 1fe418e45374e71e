"""What :meth:`visiontasks.predictor.Predictor.predict` returns: one result per image, in the pixels
of the image as given (file pixels, EXIF orientation applied), with ``save(path)`` drawing it exactly
as ``visiontasks predict``'s writers draw it (the same functions of :mod:`visiontasks.outputs.drawing`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import Tensor

from visiontasks.data.io import ImageInput, InMemoryImage, read_image
from visiontasks.ops import map_to_original
from visiontasks.outputs.drawing import (
    DRAW_NMS_IOU,
    DRAW_SCORE_THRESH,
    cam_title,
    class_colours,
    render_cam,
    render_classification,
    render_detections,
    render_segmentation,
    save_mask_png,
)


@dataclass(repr=False)
class Result:
    """One image's prediction. ``source``: the file path or ``image<i>`` for an in-memory image
    (its position in the list given); ``class_names``: the model's classes (label ``k`` is
    ``class_names[k]``)."""

    source: str
    class_names: list[str]
    image_input: ImageInput = field(repr=False)

    @property
    def path(self) -> Path | None:
        """The image file, or ``None`` for an in-memory image."""
        return None if isinstance(self.image_input, InMemoryImage) else Path(self.image_input)

    def image(self) -> np.ndarray:
        """The image as the model saw it before preprocessing: ``uint8 [H, W, 3]``."""
        return read_image(self.image_input, 3)

    @classmethod
    def from_prediction(cls, prediction: dict[str, Any], class_names: list[str], image_input: ImageInput) -> Result:
        """The result of one image from its dict of the task's ``predict_step`` (the task's
        ``result_type`` names this class)."""
        raise NotImplementedError

    def plot(self) -> np.ndarray:
        """The drawing :meth:`save` writes, as ``uint8 [H, W, 3]``."""
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """Write :meth:`plot` to ``path`` (format from the suffix, e.g. ``.png``); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(self.plot()).save(path)
        return path

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r}, {self._summary()})"

    def _summary(self) -> str:
        return ""


@dataclass(repr=False)
class ClassificationResult(Result):
    """``label``: the class index with the highest probability; ``probs``: float ``[num_classes]``
    (softmax), on the CPU; ``name``: ``class_names[label]``. With ``predict(..., cam=True)``:
    ``cam``, float ``[H0, W0]`` in the image's pixels, the class activation map of class
    ``cam_class`` (the predicted one unless ``cam_class=NAME`` was asked; ``cam_name`` its name),
    made by ``cam_method`` (``cam``: logit per cell, its mean over the model input is the logit
    minus the bias; ``grad-cam``: non-negative); else ``None``."""

    label: int = 0
    probs: Tensor | None = None
    cam: Tensor | None = None
    cam_class: int | None = None
    cam_method: str | None = None

    @classmethod
    def from_prediction(cls, prediction: dict[str, Any], class_names: list[str],
                        image_input: ImageInput) -> ClassificationResult:
        """From ``{"id", "index", "probs": [num_classes]}`` and, with maps, ``"cam"`` (over the model
        input, stretched back here to the image's size), ``"cam_class"`` and ``"cam_method"``."""
        cam = prediction.get("cam")
        if cam is not None:
            cam = map_to_original(cam.float().cpu(), read_image(image_input, 3).shape[:2])
        return cls(str(prediction["id"]), class_names, image_input, label=int(prediction["index"]),
                   probs=prediction["probs"].float().cpu(), cam=cam, cam_class=prediction.get("cam_class"),
                   cam_method=prediction.get("cam_method"))

    @property
    def cam_name(self) -> str | None:
        return None if self.cam_class is None else self.class_names[self.cam_class]

    @property
    def name(self) -> str:
        return self.class_names[self.label]

    def plot(self) -> np.ndarray:
        """The image with ``"<class> <probability>"`` in the class colour in its top-left corner; with
        a ``cam``, the map over the image with a colour bar (as ``<stem>_cam.png`` of the CLI)."""
        assert self.probs is not None
        if self.cam is not None and self.cam_class is not None:
            title = cam_title(self.name, float(self.probs[self.label]), str(self.cam_name), str(self.cam_method))
            return render_cam(self.image(), self.cam.numpy(), title, str(self.cam_method),
                              class_colours(len(self.class_names))[self.cam_class])
        return render_classification(self.image(), self.name, float(self.probs[self.label]), self.label,
                                     len(self.class_names))

    def _summary(self) -> str:
        assert self.probs is not None
        return f"{self.name} {float(self.probs[self.label]):.3f}"


@dataclass(repr=False)
class SegmentationResult(Result):
    """``mask``: int64 ``[H, W]`` class indices at the image's own size, on the CPU."""

    mask: Tensor | None = None

    @classmethod
    def from_prediction(cls, prediction: dict[str, Any], class_names: list[str],
                        image_input: ImageInput) -> SegmentationResult:
        """From ``{"id", "mask": int64 [H0, W0]}``."""
        return cls(str(prediction["id"]), class_names, image_input, mask=prediction["mask"].cpu())

    def plot(self, alpha: float = 0.5) -> np.ndarray:
        """The classes drawn over the image with a legend (as ``<stem>_overlay.png`` of the CLI)."""
        assert self.mask is not None
        return render_segmentation(self.image(), self.mask.numpy(), self.class_names, alpha)

    def save_mask(self, path: str | Path) -> Path:
        """The class indices as a palette PNG (as ``<stem>_mask.png`` of the CLI)."""
        assert self.mask is not None
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_mask_png(path, self.mask.numpy(), self.class_names)
        return path

    def _summary(self) -> str:
        assert self.mask is not None
        present = [self.class_names[k] for k in self.mask.unique().tolist() if k < len(self.class_names)]
        return f"{tuple(self.mask.shape)} mask, classes {present}"


@dataclass(repr=False)
class DetectionResult(Result):
    """``boxes``: float ``[D, 4]`` xyxy in the image's pixels; ``scores``: float ``[D]`` in [0, 1],
    best first; ``labels``: int64 ``[D]`` class indices; ``names``: the class name of each
    detection; ``masks``: bool ``[D, H, W]`` in the image's pixels (instance segmentation, else
    ``None``); ``keypoints``: float ``[D, P, 3]``, x, y in the image's pixels and the detector's
    keypoint score (keypoint detection, else ``None``), drawn joined by ``skeleton`` (0-based index
    pairs). All of them (no drawing threshold here), on the CPU."""

    boxes: Tensor | None = None
    scores: Tensor | None = None
    labels: Tensor | None = None
    masks: Tensor | None = None
    keypoints: Tensor | None = None
    skeleton: list[tuple[int, int]] | None = None

    @classmethod
    def from_prediction(cls, prediction: dict[str, Any], class_names: list[str],
                        image_input: ImageInput) -> DetectionResult:
        """From ``{"path", "boxes", "scores", "labels"}`` and, for instance segmentation,
        ``segmentation`` (COCO RLEs, decoded to bool masks); for keypoint detection ``keypoints`` and
        ``skeleton``."""
        p = prediction
        keypoints = p["keypoints"].float().cpu() if "keypoints" in p else None
        skeleton = [(int(a), int(b)) for a, b in p["skeleton"]] if p.get("skeleton") is not None else None
        return cls(str(p["path"]), class_names, image_input, boxes=p["boxes"].cpu(), scores=p["scores"].cpu(),
                   labels=p["labels"].cpu(), masks=_decoded(p), keypoints=keypoints, skeleton=skeleton)

    @property
    def names(self) -> list[str]:
        assert self.labels is not None
        return [self.class_names[k] for k in self.labels.tolist()]

    def plot(self, score_thresh: float = DRAW_SCORE_THRESH, nms_iou: float | None = DRAW_NMS_IOU) -> np.ndarray:
        """The detections scoring at least ``score_thresh`` that survive a class-agnostic NMS at IoU
        ``nms_iou`` drawn on the image (the CLI's drawing and defaults)."""
        assert self.boxes is not None and self.scores is not None and self.labels is not None
        return render_detections(self.image(), self.boxes, self.scores, self.labels, self.class_names,
                                 score_thresh, nms_iou, masks=None if self.masks is None else self.masks.numpy(),
                                 keypoints=self.keypoints, skeleton=self.skeleton)

    def _summary(self) -> str:
        assert self.scores is not None
        return f"{len(self.scores)} detections, {int((self.scores >= DRAW_SCORE_THRESH).sum())} >= {DRAW_SCORE_THRESH}"


def _decoded(prediction: dict[str, Any]) -> Tensor | None:
    """Instance masks bool ``[D, H, W]`` (file pixels) from the COCO RLEs of an instance
    segmentation prediction (``segmentation``); ``None`` for plain detection."""
    import torch

    rles = prediction.get("segmentation")
    if rles is None:
        return None
    h, w = (int(v) for v in prediction["orig_size"]) if "orig_size" in prediction else rles[0]["size"]
    if not rles:
        return torch.zeros((0, h, w), dtype=torch.bool)
    from pycocotools import mask as mask_utils

    return torch.from_numpy(mask_utils.decode(list(rles)).transpose(2, 0, 1).astype(bool))
