"""The two-stage core shared by Fast R-CNN and Faster R-CNN (detectron2's ``GeneralizedRCNN`` idea).

``backbone -> [FPN] -> proposals -> RoI heads``, where the proposals come from a Region Proposal
Network (torchvision's ``RegionProposalNetwork``, Faster R-CNN) or are precomputed and passed to
``forward`` (selective search cached by the data, Fast R-CNN), and the RoI heads are torchvision's
``RoIHeads`` (fg/bg matching and sampling, box coding, ``fastrcnn_loss``, per-class post-processing)
around a RoI pooling module, ``TwoMLPHead`` and ``FastRCNNPredictor``. The RoI-head losses and the
decoding run in fp32 whatever the autocast dtype.

Also here, for every detector on precomputed proposals (R-CNN too): :func:`clean_proposals`,
:func:`fill_empty_proposals`, and the one RoI max-pooling module (:class:`RoIMaxPool`, with
SPPnet's pyramid as :class:`SpatialPyramidRoIPool`).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import roi_pool

from visiontasks.backbones import Backbone

from .detector import Detections, Detector, Losses, select_features


def clean_proposals(proposals: Sequence[Tensor], limit: int | None) -> list[Tensor]:
    """float32 ``[P, 4]`` per image, the first ``limit`` (proposals come best-ranked first)."""
    out = []
    for p in proposals:
        p = p.reshape(-1, 4).float()
        out.append(p[:limit] if limit is not None else p)
    return out


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


class RoIMaxPool(nn.Module):
    """RoI max pooling (Fast R-CNN, ``torchvision.ops.roi_pool``) of one feature map into each grid
    of ``output_size`` (an int: one ``n x n`` grid; a list: SPPnet's pyramid), concatenated.

    ``forward(features, boxes[, image_shapes])``: ``features`` ``[N, C, h, w]`` or a dict holding
    it under ``name`` (as ``RoIHeads`` passes them; the only entry when ``name`` is ``None``),
    ``boxes`` per image ``[R_i, 4]`` xyxy input pixels -> ``[R, C * sum(n * n)]``. Works as
    ``RoIHeads``' ``box_roi_pool`` (torchvision ships only RoI *Align* as a module; on CPU RoI
    pooling's backward is ~10x faster). Runs in fp32 (no CPU bf16 kernel; the max is exact).
    """

    def __init__(self, output_size: int | Sequence[int], spatial_scale: float, name: str | None = None) -> None:
        super().__init__()
        sizes = (output_size,) if isinstance(output_size, int) else tuple(output_size)
        self.levels = tuple(int(v) for v in sizes)
        self.spatial_scale = float(spatial_scale)
        self.name = name

    def out_features(self, channels: int) -> int:
        """Output width for a ``channels``-channel feature map."""
        return channels * sum(v * v for v in self.levels)

    def forward(self, features: Tensor | Mapping[str, Tensor], boxes: list[Tensor], image_shapes: Any = None) -> Tensor:
        if not isinstance(features, Tensor):
            features = features[self.name] if self.name is not None else next(iter(features.values()))
        with torch.autocast(device_type=features.device.type, enabled=False):
            feat, rois = features.float(), [b.float() for b in boxes]
            out = [roi_pool(feat, rois, v, self.spatial_scale).flatten(1) for v in self.levels]
        return out[0] if len(out) == 1 else torch.cat(out, 1)


class SpatialPyramidRoIPool(RoIMaxPool):
    """SPPnet pooling (He et al., ECCV 2014): each RoI max-pooled into ``levels`` grids (1x1, 2x2,
    4x4 by default), concatenated: ``[R, C * sum(l * l)]``."""

    def __init__(
        self, levels: Sequence[int] = (1, 2, 4), spatial_scale: float = 1 / 16, name: str | None = None
    ) -> None:
        super().__init__(tuple(levels), spatial_scale, name)


def box_roi_heads(
    roi_pool_module: nn.Module,
    in_features: int,
    representation_size: int,
    num_classes: int,
    fg_iou_thresh: float,
    bg_iou_thresh: float,
    batch_size_per_image: int,
    positive_fraction: float,
    bbox_reg_weights: Sequence[float] | None,
    score_thresh: float,
    nms_thresh: float,
    detections_per_img: int,
) -> RoIHeads:
    """torchvision's ``RoIHeads`` on ``roi_pool_module`` (output ``in_features`` wide once flattened):
    two fc layers of ``representation_size`` (``TwoMLPHead``), then ``num_classes + 1`` scores
    (background = 0) and class-specific box deltas (``FastRCNNPredictor``)."""
    return RoIHeads(
        roi_pool_module,
        TwoMLPHead(in_features, representation_size),
        FastRCNNPredictor(representation_size, num_classes + 1),
        fg_iou_thresh, bg_iou_thresh, batch_size_per_image, positive_fraction,
        tuple(bbox_reg_weights) if bbox_reg_weights is not None else None,  # None: (10, 10, 5, 5)
        score_thresh, nms_thresh, detections_per_img,
    )


class TwoStageDetector(Detector):
    """``backbone -> [fpn] -> proposals -> roi_heads``.

    Args:
        backbone: a registered backbone; only the outputs ``feature_names`` (and the stages below
            them) are kept.
        num_classes: real classes (``roi_heads`` predicts ``num_classes + 1``, background = 0).
        feature_names: the backbone outputs used, shallow to deep.
        roi_heads: torchvision ``RoIHeads`` (see :func:`box_roi_heads`).
        rpn: a ``RegionProposalNetwork``; ``None``: precomputed proposals passed to ``forward``.
        fpn: a module over the ``OrderedDict`` of the chosen outputs (e.g. ``FeaturePyramidNetwork``).
        max_proposals_train / max_proposals_test: best-ranked precomputed proposals used per image.
        size_divisible: batch padding multiple.
    """

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        feature_names: Sequence[str],
        roi_heads: RoIHeads,
        rpn: RegionProposalNetwork | None = None,
        fpn: nn.Module | None = None,
        max_proposals_train: int | None = None,
        max_proposals_test: int | None = None,
        size_divisible: int = 32,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.size_divisible = size_divisible
        self.feature_names = list(feature_names)
        self.backbone = select_features(backbone, self.feature_names)
        self.fpn = fpn
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.max_proposals_train = max_proposals_train
        self.max_proposals_test = max_proposals_test

    def features(self, x: Tensor) -> OrderedDict[str, Tensor]:
        """Backbone (+ FPN) feature maps of a padded batch ``[N, C, H, W]``."""
        feats = self.backbone(x)
        feats = OrderedDict((n, feats[n]) for n in self.feature_names)
        return self.fpn(feats) if self.fpn is not None else feats

    def propose(
        self, images: ImageList, feats: OrderedDict[str, Tensor], targets: list[dict[str, Tensor]] | None,
        proposals: list[Tensor] | None,
    ) -> tuple[list[Tensor], Losses]:
        """Proposals per image (xyxy pixels) and the RPN's losses (none for precomputed ones)."""
        if self.rpn is not None:
            return self.rpn(images, feats, targets)
        assert proposals is not None  # checked in Detector.forward (needs_proposals)
        if not self.training:
            return clean_proposals(proposals, self.max_proposals_test), {}
        props = clean_proposals(proposals, self.max_proposals_train)
        return fill_empty_proposals(props, targets, images.image_sizes), {}

    def _box_outputs(
        self, feats: OrderedDict[str, Tensor], props: list[Tensor], sizes: list[tuple[int, int]]
    ) -> tuple[Tensor, Tensor]:
        """Class logits ``[R, C + 1]`` and class-specific deltas ``[R, 4 (C + 1)]`` of the RoIs, fp32."""
        heads = self.roi_heads
        logits, deltas = heads.box_predictor(heads.box_head(heads.box_roi_pool(feats, props, sizes)))
        return logits.float(), deltas.float()  # losses and decoding in fp32 whatever the autocast dtype

    def losses(
        self, batch: Tensor, sizes: list[tuple[int, int]], targets: list[dict[str, Any]],
        proposals: list[Tensor] | None,
    ) -> Losses:
        """``{[loss_objectness, loss_rpn_box_reg,] loss_classifier, loss_box_reg}``."""
        tv_targets = [self.torchvision_target(t) for t in targets]
        feats = self.features(batch)
        props, losses = self.propose(ImageList(batch, sizes), feats, tv_targets, proposals)
        props, matched_idxs, labels, reg_targets = self.roi_heads.select_training_samples(props, tv_targets)
        loss_cls, loss_box = fastrcnn_loss(*self._box_outputs(feats, props, sizes), labels, reg_targets)
        extra = self.sample_losses(feats, sizes, props, matched_idxs, labels, tv_targets)
        return {**losses, "loss_classifier": loss_cls, "loss_box_reg": loss_box, **extra}

    def torchvision_target(self, target: dict[str, Any]) -> dict[str, Tensor]:
        """One target as torchvision's RoI heads take it: background = 0, so labels + 1."""
        return {"boxes": target["boxes"].reshape(-1, 4).float(), "labels": target["labels"].reshape(-1).long() + 1}

    def sample_losses(
        self, feats: OrderedDict[str, Tensor], sizes: list[tuple[int, int]], props: list[Tensor],
        matched_idxs: list[Tensor], labels: list[Tensor], targets: list[dict[str, Tensor]],
    ) -> Losses:
        """Losses of further RoI branches on the sampled RoIs (Mask R-CNN's mask loss); none here."""
        return {}

    def detect(self, batch: Tensor, sizes: list[tuple[int, int]], proposals: list[Tensor] | None) -> Detections:
        """Per image ``{boxes [D, 4] xyxy px, scores [D], labels [D] int64 0-based}``."""
        feats = self.features(batch)
        props, _ = self.propose(ImageList(batch, sizes), feats, None, proposals)
        logits, deltas = self._box_outputs(feats, props, sizes)
        boxes, scores, labels = self.roi_heads.postprocess_detections(logits, deltas, props, sizes)
        detections = [
            {"boxes": b.float(), "scores": s.float(), "labels": lab - 1}  # background was 0
            for b, s, lab in zip(boxes, scores, labels)
        ]
        return self.detect_more(feats, sizes, detections)

    def detect_more(
        self, feats: OrderedDict[str, Tensor], sizes: list[tuple[int, int]], detections: Detections
    ) -> Detections:
        """Add the outputs of further RoI branches to the final detections (Mask R-CNN's masks)."""
        return detections
