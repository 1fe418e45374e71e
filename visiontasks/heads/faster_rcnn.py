"""Faster R-CNN (Ren et al., 2015) on any registered backbone, from torchvision's detection parts.

The Region Proposal Network (``RPNHead`` + ``RegionProposalNetwork`` with an ``AnchorGenerator``),
RoI Align (``MultiScaleRoIAlign``), the two-layer box head and the class-score + class-specific box
regression predictor (``RoIHeads``) are torchvision's; what is ours is the glue to our backbone
contract: the feature maps, their channels and their levels come from ``backbone.feature_info``.

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

from collections import OrderedDict
from typing import Any, Sequence

import torch
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign, roi_pool
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from visiontasks.backbones import Backbone

from .detector import Detector, batch_images, check_targets, register_detector, select_features


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
            raise ValueError(
                f"with fpn=True give one anchor size per level ({levels} levels), or a list of "
                f"sizes per level; got {sizes}"
            )
        return tuple((float(s),) for s in sizes)
    nested = tuple(tuple(float(v) for v in s) for s in sizes)
    if len(nested) != levels:
        raise ValueError(f"anchor_sizes has {len(nested)} levels, the model has {levels}")
    if len({len(s) for s in nested}) != 1:
        raise ValueError("every level needs the same number of anchor sizes (the RPN head is shared)")
    return nested


class RoIMaxPool(nn.Module):
    """Fast R-CNN's RoI max pooling on one feature map, usable as ``RoIHeads``' ``box_roi_pool``.

    torchvision only ships the multi-level RoI *Align* module; this adapter calls
    ``torchvision.ops.roi_pool`` with the feature's stride from ``feature_info``. (On CPU its
    backward pass is ~10x faster than RoI Align's, which matters for CPU training.)
    """

    def __init__(self, name: str, output_size: int, stride: int) -> None:
        super().__init__()
        self.name, self.output_size, self.stride = name, output_size, stride

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list) -> Tensor:
        feat = features[self.name]
        # fp32 like torchvision's autocast wrapper of roi_align (roi_pool has no CPU bf16 kernel)
        with torch.autocast(device_type=feat.device.type, enabled=False):
            out = roi_pool(feat.float(), [p.float() for p in proposals], self.output_size, 1.0 / self.stride)
        return out


@register_detector("faster_rcnn")
class FasterRCNN(Detector):
    """Faster R-CNN: ``backbone -> [FPN] -> RPN -> RoI Align -> box head -> classes + boxes``.

    Args:
        backbone: a registered backbone (any out_indices; the needed outputs are selected by name).
        num_classes: real classes (background is added internally).
        fpn: build a Feature Pyramid Network over the outputs with stride >= ``fpn_min_stride``.
        fpn_channels: channels of every FPN level.
        feature: single-level variant: the backbone output used (default: deepest with stride <= 16).
        anchor_sizes: anchor side lengths in pixels (see the module docstring); ``aspect_ratios``
            height/width ratios, the same at every level.
        roi_op: ``align`` (RoI Align, torchvision's ``MultiScaleRoIAlign``) or ``pool`` (the papers'
            RoI max pooling; single level only).
        roi_output_size, roi_sampling_ratio: RoI output side and (Align) sampling points per bin.
        representation_size: width of the two fully connected layers of the box head.
        rpn_*, box_*: torchvision's RPN and RoI-head settings (same defaults as
            ``torchvision.models.detection.FasterRCNN``).
        size_divisible: batch padding multiple.
    """

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        fpn: bool = False,
        fpn_channels: int = 256,
        fpn_min_stride: int = 4,
        feature: str | None = None,
        anchor_sizes: Sequence[float] | Sequence[Sequence[float]] | None = None,
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
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
        box_score_thresh: float = 0.05,
        box_nms_thresh: float = 0.5,
        box_detections_per_img: int = 100,
        box_fg_iou_thresh: float = 0.5,
        box_bg_iou_thresh: float = 0.5,
        box_batch_size_per_image: int = 512,
        box_positive_fraction: float = 0.25,
        bbox_reg_weights: Sequence[float] | None = None,
        size_divisible: int = 32,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.size_divisible = size_divisible
        infos = backbone.feature_info
        if fpn:
            chosen = [f for f in infos if f.stride >= fpn_min_stride]
            if not chosen:
                raise ValueError(f"no backbone output has stride >= {fpn_min_stride}: {infos}")
            self.feature_names = [f.name for f in chosen]
            self.fpn: FeaturePyramidNetwork | None = FeaturePyramidNetwork(
                [f.channels for f in chosen], fpn_channels, extra_blocks=LastLevelMaxPool()
            )
            channels, levels = fpn_channels, len(chosen) + 1
        else:
            if feature is None:
                small = [f for f in infos if f.stride <= 16]
                chosen = [small[-1] if small else infos[0]]
            else:
                chosen = [f for f in infos if f.name == feature]
                if not chosen:
                    raise ValueError(f"backbone has no output {feature!r}; it has {[f.name for f in infos]}")
            self.feature_names = [chosen[0].name]
            self.fpn = None
            channels, levels = chosen[0].channels, 1
        self.backbone = select_features(backbone, self.feature_names)

        sizes = _anchor_sizes(anchor_sizes, levels, fpn)
        ratios = (tuple(float(r) for r in aspect_ratios),) * levels
        anchor_generator = AnchorGenerator(sizes, ratios)
        rpn_head = RPNHead(channels, anchor_generator.num_anchors_per_location()[0])
        self.rpn = RegionProposalNetwork(
            anchor_generator, rpn_head,
            rpn_fg_iou_thresh, rpn_bg_iou_thresh, rpn_batch_size_per_image, rpn_positive_fraction,
            dict(training=rpn_pre_nms_top_n_train, testing=rpn_pre_nms_top_n_test),
            dict(training=rpn_post_nms_top_n_train, testing=rpn_post_nms_top_n_test),
            rpn_nms_thresh, score_thresh=rpn_score_thresh,
        )
        if roi_op == "align":
            roi: nn.Module = MultiScaleRoIAlign(self.feature_names, roi_output_size, roi_sampling_ratio)
        elif roi_op == "pool":
            if fpn:
                raise ValueError("roi_op='pool' works on one level; use roi_op='align' with fpn=True")
            roi = RoIMaxPool(chosen[0].name, roi_output_size, chosen[0].stride)
        else:
            raise ValueError(f"roi_op must be 'align' or 'pool', got {roi_op!r}")
        box_head = TwoMLPHead(channels * roi_output_size**2, representation_size)
        predictor = FastRCNNPredictor(representation_size, num_classes + 1)
        self.roi_heads = RoIHeads(
            roi, box_head, predictor,
            box_fg_iou_thresh, box_bg_iou_thresh, box_batch_size_per_image, box_positive_fraction,
            tuple(bbox_reg_weights) if bbox_reg_weights is not None else None,
            box_score_thresh, box_nms_thresh, box_detections_per_img,
        )

    def features(self, x: Tensor) -> OrderedDict[str, Tensor]:
        """Backbone (+ FPN) feature maps of a padded batch ``[N, C, H, W]``."""
        feats = self.backbone(x)
        feats = OrderedDict((n, feats[n]) for n in self.feature_names)
        return self.fpn(feats) if self.fpn is not None else feats

    def forward(
        self,
        images: list[Tensor],
        targets: list[dict[str, Any]] | None = None,
        proposals: list[Tensor] | None = None,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Training: ``{loss_objectness, loss_rpn_box_reg, loss_classifier, loss_box_reg}``;
        eval: per image ``{boxes [D, 4] xyxy px, scores [D], labels [D] int64 0-based}``."""
        x, sizes = batch_images(images, self.size_divisible)
        tv_targets = None
        if self.training:
            targets = check_targets(targets, len(images), self.num_classes)
            tv_targets = [{"boxes": t["boxes"].float(), "labels": t["labels"] + 1} for t in targets]
        image_list = ImageList(x, sizes)
        feats = self.features(x)
        props, rpn_losses = self.rpn(image_list, feats, tv_targets)
        detections, roi_losses = self.roi_heads(feats, props, image_list.image_sizes, tv_targets)
        if self.training:
            return {**rpn_losses, **roi_losses}
        return [
            {"boxes": d["boxes"].float(), "scores": d["scores"].float(), "labels": d["labels"] - 1}
            for d in detections
        ]
