"""Fast R-CNN (Girshick, ICCV 2015) and its SPPnet variant (He et al., ECCV 2014) on any backbone.

The CNN runs once per image; each external region proposal (selective search, cached by
:mod:`visiontasks.data.proposals`) is max-pooled from the shared feature map to a fixed grid
(``torchvision.ops.roi_pool``, 7x7 by default) or, with ``roi_pool="spp"``, to a spatial pyramid
of 1x1, 2x2 and 4x4 bins; two fully connected layers feed the two sibling outputs (``C + 1`` class
scores with background at index 0, and class-specific box offsets); training minimises one
multi-task loss, cross-entropy + smooth L1, on 64 RoIs per image of which at most 25 % are
foreground (IoU >= 0.5 with a ground-truth box; background IoU < 0.5).

The model is the two-stage core of :mod:`visiontasks.heads.two_stage` (shared with Faster R-CNN)
with precomputed proposals in place of an RPN. Reused from torchvision: ``RoIHeads``
(proposal/ground-truth matching, balanced fg/bg sampling, box coding with weights (10, 10, 5, 5) -
the paper's target normalisation -, the multi-task loss ``fastrcnn_loss`` and post-processing:
softmax, per-class decoding, clipping, per-class NMS), ``TwoMLPHead`` and ``FastRCNNPredictor``.
What is ours: feeding them cached proposals instead of an RPN, the pooling on our backbone contract
(spatial scale = 1 / stride from ``feature_info``), the SPP pooling, and the fp32 loss under autocast.

The RoIs are pooled from the deepest backbone output with stride <= 16 (the paper: VGG16's conv5_3,
stride 16; here e.g. ResNet ``layer3``, VGG ``stage4``); deeper stages are left out of the model.
Differences from the paper, on purpose: the background range is IoU in [0, 0.5) rather than [0.1, 0.5) (as torchvision and detectron2 do), and
the ground-truth boxes join the candidate RoIs in training (torchvision's ``add_gt_proposals``).
"""

from __future__ import annotations

from typing import Sequence

from visiontasks.backbones import Backbone
from visiontasks.errors import InvalidInputError

from .detector import ExportSupport, pick_feature, register_detector
from .two_stage import RoIMaxPool, SpatialPyramidRoIPool, TwoStageDetector, box_roi_heads


@register_detector("fast_rcnn")
class FastRCNN(TwoStageDetector):
    """Fast R-CNN on one output of ``backbone``: the two-stage core on precomputed proposals.

    Args:
        backbone: any registered backbone; stages deeper than ``feature`` are dropped.
        feature: the backbone output pooled (default: the deepest with stride <= 16, e.g. ResNet
            ``layer3``, VGG ``stage4``: the paper pooled VGG16's conv5_3 at stride 16).
        feature_stride: instead of ``feature``, the deepest output at this stride (e.g. 16), which
            survives a change of backbone.
        num_classes: real classes (a background class is added internally, index 0).
        roi_pool: ``"roi"`` (max pooling to ``pool_size`` x ``pool_size``) or ``"spp"`` (pyramid of
            ``spp_levels``).
        representation_size: width of the two fully connected layers (the paper's fc6/fc7: 4096).
        rois_per_image, fg_fraction, fg_iou: training sampling (64, 0.25, 0.5 as in the paper).
        max_proposals_train / max_proposals_test: best-ranked proposals used per image.
        score_thresh, nms_thresh, detections_per_img: inference post-processing (per-class NMS).
        size_divisible: images of a batch are padded to a multiple of this.

    Inputs/outputs follow :class:`~visiontasks.heads.detector.Detector`; ``proposals`` are
    required (``[P_i, 4]`` xyxy pixels per image, ``P_i`` may be 0).
    """

    needs_proposals = True
    paper = "Fast R-CNN"
    year = 2015
    export_support = ExportSupport(
        reason="Fast R-CNN needs selective-search proposals for every image, computed outside the network "
               "(scikit-image); export a faster_rcnn, whose RPN proposes inside the network",
    )

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        feature: str | None = None,
        feature_stride: int | None = None,
        roi_pool: str = "roi",
        pool_size: int = 7,
        spp_levels: Sequence[int] = (1, 2, 4),
        representation_size: int = 1024,
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
        info = pick_feature(backbone, feature, stride=feature_stride)
        if roi_pool == "roi":
            pool: RoIMaxPool = RoIMaxPool(pool_size, 1.0 / info.stride, info.name)
        elif roi_pool == "spp":
            pool = SpatialPyramidRoIPool(spp_levels, 1.0 / info.stride, info.name)
        else:
            raise InvalidInputError(f"roi_pool must be 'roi' or 'spp', got {roi_pool!r}")
        # background IoU range [0, fg_iou) (torchvision/detectron2) rather than the paper's [0.1, 0.5)
        heads = box_roi_heads(pool, pool.out_features(info.channels), representation_size, num_classes,
                              fg_iou, fg_iou, rois_per_image, fg_fraction, None,
                              score_thresh, nms_thresh, detections_per_img)
        super().__init__(backbone, num_classes, [info.name], heads, max_proposals_train=max_proposals_train,
                         max_proposals_test=max_proposals_test, size_divisible=size_divisible)
        self.feature_name = info.name
        self.roi_pool_kind = roi_pool


__all__ = ["FastRCNN", "RoIMaxPool", "SpatialPyramidRoIPool", "pick_feature"]
