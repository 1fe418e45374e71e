"""The detector interface shared by every detection model, and the registry that builds them by name.

Every detector (R-CNN, Fast R-CNN, Faster R-CNN, Mask R-CNN, Keypoint R-CNN, YOLOv1, SSD) is a :class:`Detector`: an ``nn.Module``
that takes a list of normalised images of possibly different sizes and

* in training mode, with ``targets``, returns a dict of named scalar losses (the task sums them);
* in eval mode returns, per image, ``dict(boxes=[D, 4] float32 xyxy pixels of the given image,
  inside it, scores=[D] float32 in [0, 1] sorted descending, labels=[D] int64 0-based)``.

A detector is one module with one ``@register_detector("name")`` class, imported by
``visiontasks/heads/__init__.py`` (which is what registers it); ``tests/test_detector_contract.py``
then checks it against this contract.

Target format (one everywhere): ``boxes`` float32 ``[K, 4]`` xyxy in pixels of the image as given,
``labels`` int64 ``[K]`` with 0 = the first real class. The data carries no background index; each
model adds its own background internally (Faster R-CNN shifts labels by +1 for torchvision's RoI heads,
YOLOv1 models "no object" by its confidence output, R-CNN/Fast R-CNN add a background class to their
classifiers).

``num_classes`` is always the number of real classes (background excluded).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Sequence

import torch
from torch import Tensor, nn

from visiontasks.backbones import Backbone, FeatureInfo
from visiontasks.errors import InvalidInputError, unknown_name
from visiontasks.ops import detections_to_original

Losses = dict[str, Tensor]
Detections = list[dict[str, Tensor]]


@dataclass(frozen=True)
class ExportSupport:
    """How ``visiontasks export`` carries a detector (a class attribute, ``export_support``).

    ``formats``: the formats (of ``onnx``, ``torchscript``, ``torch_export``) that carry
    ``detect(batch [1, 3, H, W], [(h, w)], None)`` faithfully; empty: not exportable, ``reason`` says
    why. ``dynamic_size``: one export accepts any image size (else the size it was exported at).
    ``outputs``: the keys of ``detect``'s per-image dict that become the exported outputs, in order,
    every one of them (``masks``: the ``roi_masks`` pasted into the image, as :meth:`Detector.forward`
    returns them; an output ``detect`` gives but ``outputs`` leaves out stops the export).
    """

    formats: tuple[str, ...] = ()
    dynamic_size: bool = False
    outputs: tuple[str, ...] = ("boxes", "scores", "labels")
    reason: str = "it declares no export support (Detector.export_support)"


class Detector(nn.Module):
    """Base class of all detectors (see the module docstring for the input/output contract).

    A template: :meth:`forward` validates the inputs once for every detector (targets in training,
    proposals where ``needs_proposals``), pads the images into one batch (top-left aligned, sides a
    multiple of ``size_divisible``) and calls :meth:`losses` (training) or :meth:`detect` (eval).
    A subclass implements those two (or overrides ``forward`` entirely).

    Class attributes: ``needs_proposals`` (``True`` for detectors that consume external region
    proposals, R-CNN and Fast R-CNN: the task then requires ``target["proposals"]`` and passes them
    as ``proposals``); ``needs_masks`` (``True`` for Mask R-CNN: training targets must carry
    ``masks`` uint8 ``[K, H, W]``; eval outputs then add ``masks`` float ``[D, H, W]`` in [0, 1] in the
    same pixels as the boxes); ``needs_keypoints`` (``True`` for Keypoint R-CNN: training targets must
    carry ``keypoints`` float ``[K, P, 3]`` (x, y, COCO visibility v; v = 0 carries no loss); eval
    outputs then add ``keypoints`` float ``[D, P, 3]``, x, y in the same pixels as the boxes and the
    keypoint's score third); ``paper`` and ``year``, the publication the detector follows (read by
    ``visiontasks benchmark detectors``); ``export_support``, what ``visiontasks export`` can do with
    it (:class:`ExportSupport`). Instances set ``num_classes`` and ``size_divisible``.
    """

    needs_proposals: ClassVar[bool] = False
    needs_masks: ClassVar[bool] = False
    needs_keypoints: ClassVar[bool] = False
    export_support: ClassVar[ExportSupport] = ExportSupport()
    paper: ClassVar[str] = ""
    year: ClassVar[int] = 0
    num_classes: int
    size_divisible: int = 32

    @classmethod
    def box_priors(cls, settings: Mapping[str, Any]) -> dict[str, Any] | None:
        """The box priors the detector built with ``settings`` (its ``model_kwargs``) compares
        boxes with, in model-input pixels, without building it (read by ``visiontasks check``):
        ``{"kind": "anchors", "boxes": [(w, h), ...], "sizes", "ratios", "note"}``,
        ``{"kind": "grid", "S": S}``, or ``None`` when it has none."""
        return None

    def forward(
        self,
        images: list[Tensor],
        targets: list[dict[str, Any]] | None = None,
        proposals: list[Tensor] | None = None,
    ) -> Losses | Detections:
        """Training mode: dict of named scalar losses. Eval mode: per-image detections in the pixels
        of the given images, or, when ``targets`` (one per image) carry the geometry of the resize
        (``image_box``, ``orig_size``), in the pixels of the original image files."""
        if self.needs_proposals:
            check_proposals(proposals, len(images))
        batch, sizes = batch_images(images, self.size_divisible)
        if self.training:
            return self.losses(batch, sizes, check_targets(targets, len(images), self.num_classes), proposals)
        detections = self.detect(batch, sizes, proposals)
        if targets is None:  # still pastes instance masks (``roi_masks``) into the images as given
            return detections_to_original(detections, [{"size": s} for s in sizes])
        return detections_to_original(detections, [{"size": s, **t} for s, t in zip(sizes, targets)])

    def losses(
        self, batch: Tensor, sizes: list[tuple[int, int]], targets: list[dict[str, Any]],
        proposals: list[Tensor] | None,
    ) -> Losses:
        """Named scalar losses of the padded ``batch`` ``[N, C, H, W]`` (image i is ``sizes[i]`` =
        (H_i, W_i) at the top left) with validated ``targets``."""
        raise NotImplementedError

    def detect(self, batch: Tensor, sizes: list[tuple[int, int]], proposals: list[Tensor] | None) -> Detections:
        """Per-image detections (boxes clipped to ``sizes[i]``) of the padded ``batch``."""
        raise NotImplementedError


DETECTORS: dict[str, Callable[..., Detector]] = {}


def register_detector(name: str) -> Callable[[Callable[..., Detector]], Callable[..., Detector]]:
    """Decorator: ``@register_detector("yolov1")`` on a Detector class or a factory function
    ``(backbone, num_classes, **kwargs) -> Detector``. The module holding it is imported by
    ``visiontasks/heads/__init__.py``, which is what registers it."""

    def deco(factory: Callable[..., Detector]) -> Callable[..., Detector]:
        if name in DETECTORS and DETECTORS[name] is not factory:
            raise ValueError(f"detector {name!r} is registered twice")
        DETECTORS[name] = factory
        return factory

    return deco


def list_detectors() -> list[str]:
    """Names accepted by :func:`build_detector`, sorted."""
    return sorted(DETECTORS)


def detector_paper(name: str) -> tuple[str, int]:
    """``(paper, year)`` of registered detector ``name`` (its class attributes; ``(name, 0)`` when it
    states none)."""
    factory = DETECTORS[name]
    return getattr(factory, "paper", "") or name, int(getattr(factory, "year", 0) or 0)


def detector_priors(name: str, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The box priors of detector ``name`` with ``settings`` (``Detector.box_priors`` of its class,
    plus ``"name"``); ``{"kind": "none", "name": name}`` when it has none or is not registered."""
    factory = DETECTORS.get(name)
    read = getattr(factory, "box_priors", None)
    priors = read(dict(settings or {})) if read is not None else None
    return {"kind": "none", "name": name} if priors is None else {**priors, "name": name}


def build_detector(name: str, backbone: Backbone, num_classes: int, **kwargs: Any) -> Detector:
    """Build detector ``name`` on ``backbone`` for ``num_classes`` real classes (no background)."""
    if name not in DETECTORS:
        raise unknown_name("detector", name, DETECTORS)
    if num_classes < 1:
        raise InvalidInputError(f"num_classes must be >= 1 (real classes, no background), got {num_classes}")
    accepted = detector_settings(name)
    for key in kwargs:
        if accepted is not None and key not in accepted:  # e.g. a setting's old name: say the new one
            raise unknown_name(f"setting of detector {name!r} (model_kwargs)", key, accepted)
    return DETECTORS[name](backbone, num_classes, **kwargs)


def detector_settings(name: str) -> list[str] | None:
    """The keyword settings detector ``name`` accepts (``model_kwargs``), or ``None`` when its factory
    takes any (``**kwargs``)."""
    params = list(inspect.signature(DETECTORS[name]).parameters.values())[2:]  # after backbone, num_classes
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]


# -- helpers shared by detectors --------------------------------------------------------------------
def select_features(backbone: Backbone, names: Sequence[str]) -> Backbone:
    """A backbone returning only the outputs ``names``, sharing ``backbone``'s modules.

    Stages deeper than the deepest requested one are left out of the new module (they would hold
    parameters that never get gradients, which DDP rejects). Freezing and ``norm_eval`` carry over.
    """
    all_names = [f.name for f in backbone.stage_info]
    missing = [n for n in names if n not in all_names]
    if missing:
        raise InvalidInputError(f"backbone has no output(s) {missing}; it has {all_names}")
    idx = sorted(all_names.index(n) for n in names)
    keep = idx[-1] + 1
    stages = [(f.name, backbone.stages[f.name], f.channels, f.stride) for f in backbone.stage_info[:keep]]
    return Backbone(stages, backbone.in_chans, idx, min(backbone.frozen_stages, keep), backbone.norm_eval)


def _outputs(infos: Sequence[FeatureInfo]) -> str:
    return ", ".join(f"{f.name} (stride {f.stride})" for f in infos)


def _missing_strides(backbone: Backbone, strides: Sequence[int], given: str, option: str) -> None:
    """One-line error when the backbone has no output at some of ``strides`` (``given``: the value
    as the user wrote it), listing the strides it has."""
    infos = backbone.feature_info
    missing = [int(s) for s in strides if all(f.stride != int(s) for f in infos)]
    if missing:
        have = ", ".join(f"{f.stride} ({f.name})" for f in infos)
        raise InvalidInputError(f"{option}={given}: the backbone has no output at stride "
                                f"{', '.join(map(str, missing))}; its strides are {have}; choose {option} from those")


def feature_at_stride(backbone: Backbone, stride: int, option: str = "feature_stride") -> FeatureInfo:
    """The deepest backbone output at exactly ``stride``. A stride the backbone lacks is an
    :class:`~visiontasks.errors.InvalidInputError` naming ``option`` and the strides it has."""
    _missing_strides(backbone, [stride], str(stride), option)
    return [f for f in backbone.feature_info if f.stride == int(stride)][-1]


def features_at_strides(backbone: Backbone, strides: Sequence[int],
                        option: str = "feature_strides") -> list[FeatureInfo]:
    """The deepest backbone output at each of ``strides``, shallow to deep, without repeats."""
    if not strides:
        raise InvalidInputError(f"{option}: give at least one stride, e.g. [8, 16, 32]")
    _missing_strides(backbone, strides, str([int(s) for s in strides]), option)
    return [feature_at_stride(backbone, s, option) for s in sorted({int(s) for s in strides})]


def pick_feature(backbone: Backbone, name: str | None = None, max_stride: int | None = 16,
                 stride: int | None = None) -> FeatureInfo:
    """The backbone output a single-level head reads: output ``name`` (the ``feature`` setting) or the
    deepest output at ``stride`` (``feature_stride``, which survives a change of backbone) when given,
    else the deepest output with stride <= ``max_stride`` (the papers' VGG16 conv5_3 at 16; the
    shallowest output if none is that fine), or the deepest output of all when ``max_stride`` is ``None``."""
    infos = backbone.feature_info
    if name is not None and stride is not None:
        raise InvalidInputError(f"feature={name!r} and feature_stride={stride}: give one of them "
                                "(feature_stride picks the output by stride, whatever the backbone)")
    if stride is not None:
        return feature_at_stride(backbone, stride)
    if name is not None:
        found = [f for f in infos if f.name == name]
        if not found:
            raise InvalidInputError(f"feature={name!r}: the backbone has no output {name!r}; it has {_outputs(infos)} "
                                    "(feature_stride picks one by stride, e.g. feature_stride: 8)")
        return found[0]
    if max_stride is None:
        return infos[-1]
    small = [f for f in infos if f.stride <= max_stride]
    return small[-1] if small else infos[0]


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


def check_proposals(proposals: list[Tensor] | None, n: int) -> list[Tensor]:
    """Validate external region proposals: one ``[P_i, 4]`` xyxy tensor per image (``P_i`` may be 0)."""
    if proposals is None:
        raise ValueError("this detector needs region proposals (one [P, 4] xyxy tensor per image): "
                         "configure data.init_args.proposals")
    if len(proposals) != n:
        raise ValueError(f"{len(proposals)} proposal tensors for {n} images")
    return proposals
