"""Faster R-CNN (Ren et al., 2015) on any registered backbone, from torchvision's detection parts.

The Region Proposal Network (``RPNHead`` + ``RegionProposalNetwork`` with an ``AnchorGenerator``),
RoI Align (``MultiScaleRoIAlign``), the two-layer box head and the class-score + class-specific box
regression predictor (``RoIHeads``) are torchvision's; what is ours is the glue to our backbone
contract: the feature maps, their channels and their levels come from ``backbone.feature_info``.
The model is the two-stage core of :mod:`visiontasks.heads.two_stage` (shared with Fast R-CNN) with
an RPN as its proposal source.

Two layouts:

* single level (the paper's): one backbone output (default: the deepest with stride <= 16, e.g.
  ResNet ``layer3`` / VGG ``stage4``) feeds the RPN and RoI Align; anchors of 3 scales x 3 aspect
  ratios per location (``anchor_sizes=(128, 256, 512)``, ``aspect_ratios=(0.5, 1, 2)``);
* ``fpn=True``: a Feature Pyramid Network (torchvision's ``FeaturePyramidNetwork``, in-channels read
  from ``feature_info``) over every output with stride >= ``fpn_min_stride`` plus a max-pooled extra
  level; RoIs are pooled from the level that fits their size. Anchors default to torchvision's: one
  size per level (32, 64, 128, ...) x 3 ratios; give ``anchor_sizes`` as one list per level (e.g.
  ``[[32, 40, 50], [64, 80, 101], ...]``) for several scales per level.

Images arrive already resized and normalised by the data pipeline, so torchvision's
``GeneralizedRCNNTransform`` (which would resize and normalise again) is not used: images are only
padded into a batch (bottom/right, to a multiple of ``size_divisible``), and boxes go in and out in
the pixels of the images as given. Background: torchvision's RoI heads reserve class 0 for it, so
labels are shifted by +1 inside and back by -1 on the way out.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from visiontasks.backbones import Backbone
from visiontasks.errors import InvalidInputError

from .detector import ExportSupport, pick_feature, register_detector
from .detector_weights import load_torchvision_detector
from .two_stage import RoIMaxPool, TwoStageDetector, box_roi_heads


ASPECT_RATIOS = (0.5, 1.0, 2.0)  # anchor height / width, the default at every level
FPN_LEVELS_ASSUMED = 5  # FPN levels when the backbone is not known (ResNet: 4 outputs + the max-pooled one)


def _anchor_sizes(
    sizes: Sequence[float] | Sequence[Sequence[float]] | None, levels: int, fpn: bool
) -> tuple[tuple[float, ...], ...]:
    if sizes is None:
        if fpn:
            return tuple((32.0 * 2**i,) for i in range(levels))
        return ((128.0, 256.0, 512.0),)
    sizes = list(sizes)
    if sizes and all(isinstance(s, (int, float)) for s in sizes):
        if not fpn:
            return (tuple(float(s) for s in sizes),)
        if len(sizes) != levels:
            raise InvalidInputError(
                f"with fpn=True give one anchor size per level ({levels} levels), or a list of "
                f"sizes per level; got {sizes}"
            )
        return tuple((float(s),) for s in sizes)
    nested = tuple(tuple(float(v) for v in s) for s in sizes)
    if len(nested) != levels:
        raise InvalidInputError(f"anchor_sizes has {len(nested)} levels, the model has {levels}")
    if len({len(s) for s in nested}) != 1:
        raise InvalidInputError("every level needs the same number of anchor sizes (the RPN head is shared)")
    return nested


@register_detector("faster_rcnn")
class FasterRCNN(TwoStageDetector):
    """Faster R-CNN: ``backbone -> [FPN] -> RPN -> RoI Align -> box head -> classes + boxes``.

    Args:
        backbone: a registered backbone (any out_indices; the needed outputs are selected by name).
        num_classes: real classes (background is added internally).
        fpn: build a Feature Pyramid Network over the outputs with stride >= ``fpn_min_stride``.
        fpn_channels: channels of every FPN level.
        feature: single-level variant: the backbone output used, by name (default: the deepest with
            stride <= 16).
        feature_stride: single-level variant: the deepest backbone output at this stride (e.g. 8:
            ResNet ``layer2``, MobileNet v2 ``stage3``, VGG ``stage3``), which survives a change of
            backbone; instead of ``feature``.
        anchor_sizes: anchor side lengths in pixels (see the module docstring); ``aspect_ratios``
            height/width ratios, the same at every level.
        roi_op: ``align`` (RoI Align, torchvision's ``MultiScaleRoIAlign``) or ``pool`` (the papers'
            RoI max pooling; single level only).
        roi_output_size, roi_sampling_ratio: RoI output side and (Align) sampling points per bin.
        representation_size: width of the two fully connected layers of the box head.
        rpn_*, box_*: torchvision's RPN and RoI-head settings (same defaults as
            ``torchvision.models.detection.FasterRCNN``).
        score_thresh, nms_thresh, detections_per_img: the final post-processing (torchvision's
            ``box_score_thresh``, ``box_nms_thresh``, ``box_detections_per_img``).
        size_divisible: batch padding multiple.
        weights: whole-detector weights of torchvision's ``fasterrcnn_resnet50_fpn`` (needs
            ``resnet50`` and ``fpn=True``): a ``FasterRCNN_ResNet50_FPN_Weights`` name such as
            ``COCO_V1`` (downloaded only when given) or a state_dict file saved from that model; another
            class count re-initialises the class-specific layers with a warning (see
            ``detector_weights``).
    """

    paper = "Faster R-CNN"
    year = 2015

    @classmethod
    def box_priors(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The RPN's anchor shapes ``(w, h)`` in model-input pixels, every size x every ratio (the
        default sizes of :func:`_anchor_sizes`; with ``fpn`` and no sizes, 5 levels are assumed)."""
        sizes = settings.get("anchor_sizes")
        note = ""
        if sizes is None:
            fpn = bool(settings.get("fpn"))
            sizes = [s for level in _anchor_sizes(None, FPN_LEVELS_ASSUMED if fpn else 1, fpn) for s in level]
            if fpn:
                note = f"FPN default sizes, one per level ({FPN_LEVELS_ASSUMED} levels assumed, as ResNet)"
        flat = [float(v) for s in sizes for v in (s if isinstance(s, (list, tuple)) else [s])]
        ratios = [float(r) for r in settings.get("aspect_ratios", ASPECT_RATIOS)]
        # torchvision's AnchorGenerator: ratio = h / w, h = size * sqrt(ratio), w = size / sqrt(ratio)
        boxes = [(s / math.sqrt(r), s * math.sqrt(r)) for s in flat for r in ratios]
        return {"kind": "anchors", "boxes": boxes, "sizes": flat, "ratios": ratios, "note": note}
    # traced exports (torchvision's own export path); torch.export stops at the data-dependent branches
    export_support = ExportSupport(
        formats=("onnx", "torchscript"), dynamic_size=True,
        reason="torch.export cannot trace torchvision's RPN and RoI heads (their NMS branches on how many "
               "boxes there are, a data-dependent shape); use --format onnx or torchscript",
    )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass adding a branch (``__init__(self, backbone, num_classes, <own settings>,
        **faster_rcnn)``) gets a signature listing its own settings then every Faster R-CNN one, so
        ``detector_settings`` (the check of ``model_kwargs``) knows them all."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None:
            init.__signature__ = _with_faster_rcnn_settings(inspect.signature(init))

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        fpn: bool = False,
        fpn_channels: int = 256,
        fpn_min_stride: int = 4,
        feature: str | None = None,
        feature_stride: int | None = None,
        anchor_sizes: Sequence[float] | Sequence[Sequence[float]] | None = None,
        aspect_ratios: Sequence[float] = ASPECT_RATIOS,
        roi_op: str = "align",
        roi_output_size: int = 7,
        roi_sampling_ratio: int = 2,
        representation_size: int = 1024,
        rpn_pre_nms_top_n_train: int = 2000,
        rpn_pre_nms_top_n_test: int = 1000,
        rpn_post_nms_top_n_train: int = 2000,
        rpn_post_nms_top_n_test: int = 1000,
        rpn_nms_thresh: float = 0.7,
        rpn_fg_iou_thresh: float = 0.7,
        rpn_bg_iou_thresh: float = 0.3,
        rpn_batch_size_per_image: int = 256,
        rpn_positive_fraction: float = 0.5,
        rpn_score_thresh: float = 0.0,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        box_fg_iou_thresh: float = 0.5,
        box_bg_iou_thresh: float = 0.5,
        box_batch_size_per_image: int = 512,
        box_positive_fraction: float = 0.25,
        bbox_reg_weights: Sequence[float] | None = None,
        size_divisible: int = 32,
        weights: str | None = None,
    ) -> None:
        infos = backbone.feature_info
        fpn_module: FeaturePyramidNetwork | None = None
        if fpn:
            chosen = [f for f in infos if f.stride >= fpn_min_stride]
            if not chosen:
                raise InvalidInputError(f"no backbone output has stride >= {fpn_min_stride}: {infos}")
            fpn_module = FeaturePyramidNetwork(
                [f.channels for f in chosen], fpn_channels, extra_blocks=LastLevelMaxPool()
            )
            channels, levels = fpn_channels, len(chosen) + 1
        else:
            chosen = [pick_feature(backbone, feature, stride=feature_stride)]
            channels, levels = chosen[0].channels, 1
        names = [f.name for f in chosen]

        sizes = _anchor_sizes(anchor_sizes, levels, fpn)
        ratios = (tuple(float(r) for r in aspect_ratios),) * levels
        anchor_generator = AnchorGenerator(sizes, ratios)
        rpn_head = RPNHead(channels, anchor_generator.num_anchors_per_location()[0])
        rpn = RegionProposalNetwork(
            anchor_generator, rpn_head,
            rpn_fg_iou_thresh, rpn_bg_iou_thresh, rpn_batch_size_per_image, rpn_positive_fraction,
            dict(training=rpn_pre_nms_top_n_train, testing=rpn_pre_nms_top_n_test),
            dict(training=rpn_post_nms_top_n_train, testing=rpn_post_nms_top_n_test),
            rpn_nms_thresh, score_thresh=rpn_score_thresh,
        )
        if roi_op == "align":
            roi: nn.Module = MultiScaleRoIAlign(names, roi_output_size, roi_sampling_ratio)
        elif roi_op == "pool":
            if fpn:
                raise InvalidInputError("roi_op='pool' works on one level; use roi_op='align' with fpn=True")
            roi = RoIMaxPool(roi_output_size, 1.0 / chosen[0].stride, chosen[0].name)
        else:
            raise InvalidInputError(f"roi_op must be 'align' or 'pool', got {roi_op!r}")
        heads = box_roi_heads(
            roi, channels * roi_output_size**2, representation_size, num_classes,
            box_fg_iou_thresh, box_bg_iou_thresh, box_batch_size_per_image, box_positive_fraction,
            bbox_reg_weights, score_thresh, nms_thresh, detections_per_img,
        )
        super().__init__(backbone, num_classes, names, heads, rpn=rpn, fpn=fpn_module,
                         size_divisible=size_divisible)
        self.out_channels = channels  # of the maps the RoI heads read (FPN levels or the single one)
        if weights is not None:
            load_torchvision_detector(self, weights, num_classes)


def _with_faster_rcnn_settings(own: inspect.Signature) -> inspect.Signature:
    """``own`` without its ``**kwargs``, followed (keyword-only) by :class:`FasterRCNN`'s settings it
    does not name itself; ``own`` unchanged when it takes no ``**kwargs``."""
    params = list(own.parameters.values())
    if not params or params[-1].kind is not inspect.Parameter.VAR_KEYWORD:
        return own
    names = {p.name for p in params}
    rest = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(FasterRCNN.__init__).parameters.values() if p.name not in names]
    return own.replace(parameters=params[:-1] + rest)


def positive_rois(proposals: list[Tensor], labels: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """Per image, the indices of the sampled RoIs matched to an object (label > 0) and their boxes
    (xyxy px): the RoIs a mask or keypoint branch trains on, as torchvision's ``RoIHeads.forward``
    selects them."""
    positive = [torch.where(lab > 0)[0] for lab in labels]
    return positive, [p[i] for p, i in zip(proposals, positive)]
