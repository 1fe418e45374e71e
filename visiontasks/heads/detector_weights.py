"""Whole-detector weights from torchvision: ``fasterrcnn_resnet50_fpn``'s (``maskrcnn_resnet50_fpn``'s,
``keypointrcnn_resnet50_fpn``'s) COCO weights (by name, downloaded only when asked) or a state_dict file
saved from that model, loaded into our ``faster_rcnn`` (``mask_rcnn``, ``keypoint_rcnn``) (ResNet-50
backbone, ``fpn: true``); the same for
``ssd300_vgg16`` into our ``ssd`` (VGG-16 backbone, the settings of ``ssd.TORCHVISION_SSD300``; see
:func:`load_torchvision_ssd`).

torchvision's keys are renamed, not matched by position: ``backbone.body.<resnet key>`` goes to our
backbone's stage of that tensor (the registry's canonical-key map), ``backbone.fpn.`` to ``fpn.``;
``rpn.`` and ``roi_heads.`` are torchvision's own modules in both. With another class count the
class-specific layers (``box_predictor.cls_score`` / ``bbox_pred``, and Mask R-CNN's
``mask_predictor.mask_fcn_logits``) are re-initialised with a warning, and so is Keypoint R-CNN's
``keypoint_predictor.kps_score_lowres`` with another keypoint count:
the fine-tuning recipe of torchvision's detection tutorial. Our labels are torchvision's minus one
(its class 0 is the background), so COCO's 90 label ids map to our 0..89.
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import nn

from visiontasks.backbones import Backbone, get_spec
from visiontasks.backbones._transfer import canonical_keys
from visiontasks.checkpoints import read_state_dict
from visiontasks.errors import InvalidInputError

TORCHVISION_WEIGHTS = "FasterRCNN_ResNet50_FPN_Weights"
CLASS_SPECIFIC = ("roi_heads.box_predictor.cls_score.", "roi_heads.box_predictor.bbox_pred.")
# per detector: (torchvision model, its weights enum, its class-specific layers)
KINDS = {
    "faster_rcnn": ("fasterrcnn_resnet50_fpn", TORCHVISION_WEIGHTS, CLASS_SPECIFIC),
    "mask_rcnn": ("maskrcnn_resnet50_fpn", "MaskRCNN_ResNet50_FPN_Weights",
                  CLASS_SPECIFIC + ("roi_heads.mask_predictor.mask_fcn_logits.",)),
    "keypoint_rcnn": ("keypointrcnn_resnet50_fpn", "KeypointRCNN_ResNet50_FPN_Weights", CLASS_SPECIFIC),
}
# Keypoint R-CNN's layer that depends on the keypoint count (17 for COCO person): re-initialised, with a
# warning, for another ``num_keypoints``
KEYPOINT_SPECIFIC = ("roi_heads.keypoint_predictor.kps_score_lowres.",)


def torchvision_detector_state(weights: str | os.PathLike, enum: str = TORCHVISION_WEIGHTS) -> dict[str, torch.Tensor]:
    """A torchvision detector's state_dict: a weights name of ``enum`` (default
    ``FasterRCNN_ResNet50_FPN_Weights``; ``COCO_V1``, ``DEFAULT``; downloaded here) or a file."""
    text = str(weights)
    if isinstance(weights, os.PathLike) or os.sep in text or text.endswith((".pth", ".pt", ".bin")):
        return read_state_dict(text, "detector weights file")
    from torchvision.models import get_weight

    try:
        enum_value = get_weight(f"{enum}.{text}")
    except (ValueError, KeyError, AttributeError):
        raise InvalidInputError(
            f"unknown detector weights {text!r}: neither a file nor a member of torchvision's {enum}"
        ) from None
    return enum_value.get_state_dict(progress=True, check_hash=True)


def _renamed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's detector keys -> ours."""
    spec = get_spec("resnet50")
    with torch.device("meta"):  # only names and tensor identities are needed
        model = spec.make_model(1000)
    body = {c: b for b, c in canonical_keys(model, Backbone(spec.split(model)[0])).items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("backbone.body."):
            rest = key[len("backbone.body."):]
            out["backbone." + body.get(rest, "?" + rest)] = value
        elif key.startswith("backbone.fpn."):
            out["fpn." + key[len("backbone.fpn."):]] = value
        else:
            out[key] = value
    return out


def load_torchvision_detector(
    detector: nn.Module, weights: str | os.PathLike, num_classes: int, kind: str = "faster_rcnn"
) -> None:
    """Load torchvision's ResNet-50-FPN weights of ``kind`` (``faster_rcnn``: ``fasterrcnn_resnet50_fpn``,
    ``mask_rcnn``: ``maskrcnn_resnet50_fpn``, ``keypoint_rcnn``: ``keypointrcnn_resnet50_fpn``) into
    ``detector`` (ours on ``resnet50`` with ``fpn: true``); raises :class:`InvalidInputError` when they do not fit."""
    tv_name, enum, class_specific_keys = KINDS[kind]
    state = _renamed(torchvision_detector_state(weights, enum))
    own = detector.state_dict()
    class_specific = [k for k in state if k.startswith(class_specific_keys)]
    if any(k in own and own[k].shape != state[k].shape for k in class_specific):
        theirs = state["roi_heads.box_predictor.cls_score.weight"].shape[0] - 1
        warnings.warn(
            f"{kind}: {weights} has {theirs} classes, the model {num_classes}: box_predictor "
            f"(cls_score, bbox_pred){' and mask_predictor (mask_fcn_logits)' if kind == 'mask_rcnn' else ''} "
            "re-initialised",
            stacklevel=3,
        )
        state = {k: v for k, v in state.items() if k not in class_specific}
    if kind == "keypoint_rcnn":
        class_specific_keys += KEYPOINT_SPECIFIC
        key = KEYPOINT_SPECIFIC[0] + "weight"
        if key in state and key in own and own[key].shape != state[key].shape:
            warnings.warn(f"{kind}: {weights} has {state[key].shape[1]} keypoints, the model {own[key].shape[1]}: "
                          "keypoint_predictor (kps_score_lowres) re-initialised", stacklevel=3)
            state = {k: v for k, v in state.items() if not k.startswith(KEYPOINT_SPECIFIC)}
    load_fitting(detector, state, class_specific_keys,
                 f"detector weights {weights} do not fit: they are torchvision's {tv_name} (set "
                 "backbone: resnet50 and model_kwargs: {fpn: true})")


def load_fitting(detector: nn.Module, state: dict[str, torch.Tensor], class_specific: tuple[str, ...],
                 refusal: str) -> None:
    """Load ``state`` into ``detector`` when every tensor fits (keys under the ``class_specific``
    prefixes may be missing: they keep their fresh initialisation); else raise
    :class:`InvalidInputError` with ``refusal`` and the first mismatched, unexpected and missing keys."""
    own = detector.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")
               and not k.startswith(class_specific)]
    if mismatched or unexpected or missing:
        raise InvalidInputError(
            f"{refusal}; mismatched {mismatched[:3]}, unexpected {unexpected[:3]}, missing {missing[:3]}"
        )
    detector.load_state_dict(state, strict=False)


# -- SSD300 VGG-16 ----------------------------------------------------------------------------------
SSD_TORCHVISION_WEIGHTS = "SSD300_VGG16_Weights"
SSD_CLASS_SPECIFIC = ("head.classification_head.",)


def ssd_renamed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's ``ssd300_vgg16`` keys -> our ``ssd``'s: ``backbone.features.N`` (VGG up to
    conv4_3) and ``backbone.extra.0.j`` for j < 7 (pool4, conv5_x: VGG ``features.(pool4 + j)``) go to
    our backbone's stages, ``backbone.extra.0.7.`` (pool5', fc6, fc7) to ``fc.``,
    ``backbone.extra.i.`` to ``extras.(i - 1).``, ``backbone.scale_weight`` to ``l2norm.weight``;
    ``head.`` is torchvision's ``SSDHead`` in both."""
    spec = get_spec("vgg16")
    with torch.device("meta"):  # only names and tensor identities are needed
        model = spec.make_model(1000)
    body = {c: b for b, c in canonical_keys(model, Backbone(spec.split(model)[0])).items()}
    pool4 = [i for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)][3]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("backbone.features."):
            rest = "features." + key[len("backbone.features."):]
            out["backbone." + body.get(rest, "?" + rest)] = value
        elif key.startswith("backbone.extra.0."):
            j, _, rest = key[len("backbone.extra.0."):].partition(".")
            if int(j) < 7:
                rest = f"features.{pool4 + int(j)}.{rest}"
                out["backbone." + body.get(rest, "?" + rest)] = value
            else:
                out["fc." + rest] = value
        elif key.startswith("backbone.extra."):
            i, _, rest = key[len("backbone.extra."):].partition(".")
            out[f"extras.{int(i) - 1}.{rest}"] = value
        elif key == "backbone.scale_weight":
            out["l2norm.weight"] = value
        else:
            out[key] = value
    return out


def load_torchvision_ssd(detector: nn.Module, weights: str | os.PathLike, num_classes: int) -> None:
    """Load torchvision's SSD300 VGG-16 weights into ``detector`` (our ``ssd`` on ``vgg16``); raises
    :class:`InvalidInputError` when they do not fit. Default boxes other than torchvision's (the
    settings of ``ssd.TORCHVISION_SSD300``) are allowed with a warning: the weights were trained on
    those."""
    from .ssd import TORCHVISION_SSD300

    state = ssd_renamed(torchvision_detector_state(weights, SSD_TORCHVISION_WEIGHTS))
    own = detector.state_dict()
    class_specific = [k for k in state if k.startswith(SSD_CLASS_SPECIFIC)]
    if any(k in own and own[k].shape != state[k].shape for k in class_specific):
        anchors = state["head.regression_head.module_list.0.weight"].shape[0] // 4
        theirs = state["head.classification_head.module_list.0.weight"].shape[0] // anchors - 1
        warnings.warn(
            f"ssd: {weights} has {theirs} classes, the model {num_classes}: the classification head re-initialised",
            stacklevel=3,
        )
        state = {k: v for k, v in state.items() if k not in class_specific}
    load_fitting(detector, state, SSD_CLASS_SPECIFIC,
                 f"detector weights {weights} do not fit: they are torchvision's ssd300_vgg16 (set backbone: "
                 f"vgg16 and model_kwargs: {TORCHVISION_SSD300})")
    boxes = detector.anchor_generator
    if (list(boxes.scales) != TORCHVISION_SSD300["scales"] or list(boxes.steps or []) != TORCHVISION_SSD300["steps"]
            or [list(r) for r in boxes.aspect_ratios] != TORCHVISION_SSD300["aspect_ratios"]):
        warnings.warn(f"ssd: {weights} were trained with torchvision's default boxes; the model's differ "
                      f"(set model_kwargs: {TORCHVISION_SSD300} to use them as trained)", stacklevel=3)
