"""Fast R-CNN (Girshick, ICCV 2015) and its SPPnet variant (He et al., ECCV 2014) on any backbone.

The CNN runs once per image; each external region proposal (selective search, cached by
:mod:`visiontasks.data.proposals`) is max-pooled from the shared feature map to a fixed grid
(``torchvision.ops.roi_pool``, 7x7 by default) or, with ``roi_pool="spp"``, to a spatial pyramid
of 1x1, 2x2 and 4x4 bins; two fully connected layers feed the two sibling outputs (``C + 1`` class
scores with background at index 0, and class-specific box offsets); training minimises one
multi-task loss, cross-entropy + smooth L1, on 64 RoIs per image of which at most 25 % are
foreground (IoU >= 0.5 with a ground-truth box; background IoU < 0.5).

Reused from torchvision: ``RoIHeads`` (proposal/ground-truth matching, balanced fg/bg sampling,
box coding with weights (10, 10, 5, 5) - the paper's target normalisation -, the multi-task loss
``fastrcnn_loss`` and post-processing: softmax, per-class decoding, clipping, per-class NMS),
``TwoMLPHead`` and ``FastRCNNPredictor``. What is ours: feeding them cached proposals instead of an
RPN, the pooling on our backbone contract (spatial scale = 1 / stride from ``feature_info``), the
SPP pooling, and the fp32 loss under autocast.

The RoIs are pooled from the deepest backbone output with stride <= 16 (the paper: VGG16's conv5_3,
stride 16; here e.g. ResNet ``layer3``, VGG ``stage4``); deeper stages are left out of the model.
Differences from the paper, on purpose: the background range is IoU in [0, 0.5) rather than [0.1, 0.5) (as torchvision and detectron2 do), and
the ground-truth boxes join the candidate RoIs in training (torchvision's ``add_gt_proposals``).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.ops import roi_pool

from visiontasks.backbones import Backbone

from .detector import Detector, batch_images, register_detector, select_features


def fill_empty_proposals(
    proposals: Sequence[Tensor], targets: Sequence[dict[str, Any]] | None, sizes: Sequence[tuple[int, int]]
) -> list[Tensor]:
    """In training, an image with no proposal and no ground truth would add no region at all (and
    a batch of such images no loss term, which stalls DDP); give it its whole-image box, a
    legitimate background region."""
    out = []
    for i, p in enumerate(proposals):
        p = p.reshape(-1, 4).float()
        n_gt = 0 if targets is None else int(targets[i]["boxes"].numel())
        if len(p) == 0 and n_gt == 0:
            h, w = sizes[i]
            p = torch.tensor([[0.0, 0.0, float(w), float(h)]], device=p.device)
        out.append(p)
    return out


def clean_proposals(proposals: Sequence[Tensor], limit: int | None) -> list[Tensor]:
    """float32 ``[P, 4]`` per image, the first ``limit`` (proposals come best-ranked first)."""
    out = []
    for p in proposals:
        p = p.reshape(-1, 4).float()
        out.append(p[:limit] if limit is not None else p)
    return out


def deepest_feature(backbone: Backbone) -> tuple[str, int, int]:
    """``(name, channels, stride)`` of the backbone's deepest returned output."""
    info = backbone.feature_info[-1]
    return info.name, info.channels, info.stride


def pick_feature(backbone: Backbone, name: str | None) -> tuple[str, int, int]:
    """``(name, channels, stride)`` of output ``name``, or by default of the deepest output with
    stride <= 16 (the paper's VGG16 conv5_3; the same default as the single-level Faster R-CNN)."""
    infos = backbone.feature_info
    if name is None:
        small = [f for f in infos if f.stride <= 16]
        info = small[-1] if small else infos[0]
    else:
        found = [f for f in infos if f.name == name]
        if not found:
            raise ValueError(f"backbone has no output {name!r}; it has {[f.name for f in infos]}")
        info = found[0]
    return info.name, info.channels, info.stride


class RoIMaxPool(nn.Module):
    """RoI max pooling (Fast R-CNN): ``[N, C, h, w]`` + per-image boxes (xyxy, input pixels) ->
    ``[R, C * out * out]``."""

    def __init__(self, output_size: int, spatial_scale: float) -> None:
        super().__init__()
        self.output_size = int(output_size)
        self.spatial_scale = float(spatial_scale)

    def out_features(self, channels: int) -> int:
        return channels * self.output_size**2

    def forward(self, feature: Tensor, boxes: list[Tensor]) -> Tensor:
        # fp32: torchvision's CPU kernel has no autocast rule and wants boxes and features alike;
        # the max of bf16/fp16 values is exact in fp32
        return roi_pool(feature.float(), boxes, self.output_size, self.spatial_scale).flatten(1)


class SpatialPyramidRoIPool(nn.Module):
    """SPPnet pooling: max pooling of each RoI into ``levels`` grids (1x1, 2x2, 4x4 by default),
    concatenated: ``[R, C * sum(l * l)]``."""

    def __init__(self, levels: Sequence[int], spatial_scale: float) -> None:
        super().__init__()
        self.levels = tuple(int(v) for v in levels)
        self.spatial_scale = float(spatial_scale)

    def out_features(self, channels: int) -> int:
        return channels * sum(v * v for v in self.levels)

    def forward(self, feature: Tensor, boxes: list[Tensor]) -> Tensor:
        feature = feature.float()  # see RoIMaxPool
        return torch.cat(
            [roi_pool(feature, boxes, v, self.spatial_scale).flatten(1) for v in self.levels], 1
        )


@register_detector("fast_rcnn")
class FastRCNN(Detector):
    """Fast R-CNN on one output of ``backbone``.

    Args:
        backbone: any registered backbone; stages deeper than ``feature`` are dropped.
        feature: the backbone output pooled (default: the deepest with stride <= 16, e.g. ResNet
            ``layer3``, VGG ``stage4``: the paper pooled VGG16's conv5_3 at stride 16).
        num_classes: real classes (a background class is added internally, index 0).
        roi_pool: ``"roi"`` (max pooling to ``pool_size`` x ``pool_size``) or ``"spp"`` (pyramid of
            ``spp_levels``).
        hidden_dim: width of the two fully connected layers (the paper's fc6/fc7 had 4096).
        rois_per_image, fg_fraction, fg_iou: training sampling (64, 0.25, 0.5 as in the paper).
        max_proposals_train / max_proposals_test: best-ranked proposals used per image.
        score_thresh, nms_thresh, detections_per_img: inference post-processing (per-class NMS).
        size_divisible: images of a batch are padded to a multiple of this.

    Inputs/outputs follow :class:`~visiontasks.heads.detector.Detector`; ``proposals`` are
    required (``[P_i, 4]`` xyxy pixels per image, ``P_i`` may be 0).
    """

    needs_proposals = True

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        feature: str | None = None,
        roi_pool: str = "roi",
        pool_size: int = 7,
        spp_levels: Sequence[int] = (1, 2, 4),
        hidden_dim: int = 1024,
        rois_per_image: int = 64,
        fg_fraction: float = 0.25,
        fg_iou: float = 0.5,
        max_proposals_train: int = 2000,
        max_proposals_test: int = 2000,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.3,
        detections_per_img: int = 100,
        size_divisible: int = 32,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.feature_name, channels, stride = pick_feature(backbone, feature)
        self.backbone = select_features(backbone, [self.feature_name])
        if roi_pool == "roi":
            pool: nn.Module = RoIMaxPool(pool_size, 1.0 / stride)
        elif roi_pool == "spp":
            pool = SpatialPyramidRoIPool(spp_levels, 1.0 / stride)
        else:
            raise ValueError(f"roi_pool must be 'roi' or 'spp', got {roi_pool!r}")
        self.roi_pool_kind = roi_pool
        self.max_proposals_train = max_proposals_train
        self.max_proposals_test = max_proposals_test
        self.size_divisible = size_divisible
        # TwoMLPHead flattens its input and applies fc6, fc7 (ReLU each); our pool already flattens
        self.roi_heads = RoIHeads(
            box_roi_pool=pool,
            box_head=TwoMLPHead(pool.out_features(channels), hidden_dim),
            box_predictor=FastRCNNPredictor(hidden_dim, num_classes + 1),
            fg_iou_thresh=fg_iou,
            bg_iou_thresh=fg_iou,
            batch_size_per_image=rois_per_image,
            positive_fraction=fg_fraction,
            bbox_reg_weights=None,  # (10, 10, 5, 5)
            score_thresh=score_thresh,
            nms_thresh=nms_thresh,
            detections_per_img=detections_per_img,
        )

    def forward(
        self,
        images: list[Tensor],
        targets: list[dict[str, Any]] | None = None,
        proposals: list[Tensor] | None = None,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        if proposals is None:
            raise ValueError("fast_rcnn needs region proposals: configure data.init_args.proposals")
        if len(proposals) != len(images):
            raise ValueError(f"{len(proposals)} proposal tensors for {len(images)} images")
        batch, sizes = batch_images(images, self.size_divisible)
        feature = self.backbone(batch)[self.feature_name]
        heads = self.roi_heads
        if self.training:
            if targets is None:
                raise ValueError("fast_rcnn in training mode needs targets")
            props = fill_empty_proposals(clean_proposals(proposals, self.max_proposals_train), targets, sizes)
            tgts = [
                {"boxes": t["boxes"].reshape(-1, 4).float(), "labels": t["labels"].reshape(-1).long() + 1}
                for t in targets
            ]
            props, _, labels, reg_targets = heads.select_training_samples(props, tgts)
            x = heads.box_head(heads.box_roi_pool(feature, props))
            logits, deltas = heads.box_predictor(x)
            # losses in fp32 whatever the autocast dtype
            loss_cls, loss_box = fastrcnn_loss(logits.float(), deltas.float(), labels, reg_targets)
            return {"loss_classifier": loss_cls, "loss_box_reg": loss_box}
        props = clean_proposals(proposals, self.max_proposals_test)
        x = heads.box_head(heads.box_roi_pool(feature, props))
        logits, deltas = heads.box_predictor(x)
        boxes, scores, labels = heads.postprocess_detections(logits.float(), deltas.float(), props, sizes)
        return [
            {"boxes": b, "scores": s, "labels": lab - 1}  # background was 0: back to 0-based classes
            for b, s, lab in zip(boxes, scores, labels)
        ]


__all__ = ["FastRCNN", "RoIMaxPool", "SpatialPyramidRoIPool", "pick_feature"]
