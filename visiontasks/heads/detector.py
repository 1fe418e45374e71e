"""The detector interface shared by every detection model, and the registry that builds them by name.

Every detector (R-CNN, Fast R-CNN, Faster R-CNN, YOLOv1) is a :class:`Detector`: an ``nn.Module``
that takes a list of normalised images of possibly different sizes and

* in training mode, with ``targets``, returns a dict of named scalar losses (the task sums them);
* in eval mode returns, per image, ``dict(boxes=[D, 4] float xyxy pixels of the given image,
  scores=[D] float, labels=[D] int64 0-based)``.

Target format (one everywhere): ``boxes`` float32 ``[K, 4]`` xyxy in pixels of the image as given,
``labels`` int64 ``[K]`` with 0 = the first real class. The data carries no background index; each
model adds its own background internally (Faster R-CNN shifts labels by +1 for torchvision's RoI heads,
YOLOv1 models "no object" by its confidence output, R-CNN/Fast R-CNN add a background class to their
classifiers).

``num_classes`` is always the number of real classes (background excluded).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, ClassVar, Sequence

import torch
from torch import Tensor, nn

from visiontasks.backbones import Backbone

Losses = dict[str, Tensor]
Detections = list[dict[str, Tensor]]


class Detector(nn.Module):
    """Base class of all detectors (see the module docstring for the input/output contract).

    ``needs_proposals``: ``True`` for detectors that consume external region proposals (R-CNN,
    Fast R-CNN); the task then requires ``target["proposals"]`` and passes them as ``proposals``.
    """

    needs_proposals: ClassVar[bool] = False

    def forward(  # noqa: D401 - interface
        self,
        images: list[Tensor],
        targets: list[dict[str, Any]] | None = None,
        proposals: list[Tensor] | None = None,
    ) -> Losses | Detections:
        """Training mode: dict of named scalar losses; eval mode: per-image detections."""
        raise NotImplementedError


DETECTORS: dict[str, Callable[..., Detector]] = {}

# Modules that register detectors when imported. They land in separate work streams, so a module
# that does not exist (yet) must not break the others; a module that exists but fails to import is
# reported.
_DETECTOR_MODULES = ("faster_rcnn", "yolov1", "rcnn", "fast_rcnn")
_imported = False


def register_detector(name: str) -> Callable[[Callable[..., Detector]], Callable[..., Detector]]:
    """Decorator: ``@register_detector("yolov1")`` on a Detector class or a factory function
    ``(backbone, num_classes, **kwargs) -> Detector``."""

    def deco(factory: Callable[..., Detector]) -> Callable[..., Detector]:
        if name in DETECTORS and DETECTORS[name] is not factory:
            raise ValueError(f"detector {name!r} is registered twice")
        DETECTORS[name] = factory
        return factory

    return deco


def _import_detector_modules() -> None:
    global _imported
    if _imported:
        return
    for mod in _DETECTOR_MODULES:
        try:
            importlib.import_module(f"visiontasks.heads.{mod}")
        except ModuleNotFoundError as err:
            if err.name != f"visiontasks.heads.{mod}":
                raise  # the module exists but one of ITS imports is missing: don't hide it
    _imported = True


def list_detectors() -> list[str]:
    """Names accepted by :func:`build_detector`, sorted."""
    _import_detector_modules()
    return sorted(DETECTORS)


def build_detector(name: str, backbone: Backbone, num_classes: int, **kwargs: Any) -> Detector:
    """Build detector ``name`` on ``backbone`` for ``num_classes`` real classes (no background)."""
    _import_detector_modules()
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; available: {', '.join(sorted(DETECTORS))}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1 (real classes, no background), got {num_classes}")
    return DETECTORS[name](backbone, num_classes, **kwargs)


# -- helpers shared by detectors --------------------------------------------------------------------
def select_features(backbone: Backbone, names: Sequence[str]) -> Backbone:
    """A backbone returning only the outputs ``names``, sharing ``backbone``'s modules.

    Stages deeper than the deepest requested one are left out of the new module (they would hold
    parameters that never get gradients, which DDP rejects). Freezing and ``norm_eval`` carry over.
    """
    all_names = [f.name for f in backbone.stage_info]
    missing = [n for n in names if n not in all_names]
    if missing:
        raise ValueError(f"backbone has no output(s) {missing}; it has {all_names}")
    idx = sorted(all_names.index(n) for n in names)
    keep = idx[-1] + 1
    stages = [(f.name, backbone.stages[f.name], f.channels, f.stride) for f in backbone.stage_info[:keep]]
    return Backbone(stages, backbone.in_chans, idx, min(backbone.frozen_stages, keep), backbone.norm_eval)


def batch_images(images: Sequence[Tensor], size_divisible: int = 32) -> tuple[Tensor, list[tuple[int, int]]]:
    """Pad images ``[C, H_i, W_i]`` at the bottom/right into one ``[N, C, H, W]`` tensor whose sides
    are multiples of ``size_divisible``; returns it and the (H_i, W_i). Pixel coordinates of every
    image are unchanged (top-left aligned), so boxes need no shift."""
    if len(images) == 0:
        raise ValueError("a detector needs at least one image")
    sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
    h = max(s[0] for s in sizes)
    w = max(s[1] for s in sizes)
    d = max(int(size_divisible), 1)
    h, w = -(-h // d) * d, -(-w // d) * d
    if all(s == (h, w) for s in sizes):
        return torch.stack(list(images)), sizes
    out = images[0].new_zeros((len(images), images[0].shape[0], h, w))
    for i, im in enumerate(images):
        out[i, :, : im.shape[-2], : im.shape[-1]].copy_(im)
    return out, sizes


def check_targets(targets: list[dict[str, Any]] | None, n: int, num_classes: int) -> list[dict[str, Any]]:
    """Validate training targets (one per image; ``boxes`` [K, 4] float, ``labels`` [K] in range)."""
    if targets is None:
        raise ValueError("training mode needs targets (boxes xyxy pixels, labels 0-based)")
    if len(targets) != n:
        raise ValueError(f"got {n} images but {len(targets)} targets")
    for t in targets:
        boxes, labels = t["boxes"], t["labels"]
        if boxes.ndim != 2 or boxes.shape[-1] != 4 or labels.shape != boxes.shape[:1]:
            raise ValueError(f"target boxes must be [K, 4] and labels [K], got {list(boxes.shape)}, {list(labels.shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(f"target labels must be in [0, {num_classes - 1}], got {labels.tolist()}")
    return targets
