"""R-CNN (Girshick, Donahue, Darrell, Malik, CVPR 2014) on any registered backbone.

Each region proposal is enlarged so that, once warped to ``warp_size`` x ``warp_size``, it has
``context_padding`` pixels of image context on every side (the paper: 16 px at 227), cropped and
warped (anisotropically) with ``torchvision.ops.roi_align`` on the zero-padded batch (zero = the
mean colour of normalised images, the paper's fill outside the image), and run through the whole
CNN: backbone -> global average pooling ("pool5" features) -> fc ("fc7" features, ReLU) -> the
``C + 1``-way softmax classifier used for fine-tuning. On top of it:

* per-class linear SVMs on the fc7 features: positives are the ground-truth boxes of the class,
  negatives the regions with IoU < 0.3 with every box of that class, hinge loss with an L2 penalty
  (positives weighted ``svm_pos_weight``, as the released R-CNN code weights them 2:1);
* class-specific bounding-box regression on pool5 features for regions with IoU >= 0.6 (the paper's
  regularised least squares, here a squared loss + ridge penalty, targets coded like Fast R-CNN's);
* at test time every proposal goes through the CNN (in chunks), scores come from the SVMs
  (``score_mode="svm"``, shown as ``sigmoid(margin)``) or from the softmax (``"softmax"``), boxes
  are regressed per class and per-class NMS (IoU 0.3) keeps the detections.

Training stages (``stage``): the paper trains in three steps on frozen outputs of the previous one.
Here the same losses are optimised through one Lightning fit:

* ``"all"`` (default): every step fine-tunes the CNN with cross-entropy on a mini-batch of
  ``regions_per_batch`` warped regions (25 % foreground IoU >= 0.5, 75 % background: 32/96 as in
  the paper) and, on the same regions with their features detached, trains the SVMs and the box
  regressors. The detaching keeps the stages separate in gradient terms: SVM and regression losses
  never reach the CNN; they chase slowly moving features, which the hinge loss copes with (only
  margin violators - the hard examples - contribute, which stands in for hard-negative mining).
* ``"finetune"``: only the CNN + softmax (stage 1 of the paper).
* ``"svm"``: the CNN is frozen (weights and BatchNorm statistics, e.g. loaded from a stage-1
  checkpoint with ``init_weights``), only SVMs and box regressors learn (stages 2 and 3).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler, BoxCoder
from torchvision.ops import box_iou, roi_align

from visiontasks.backbones import Backbone
from visiontasks.checkpoints import read_state_dict
from visiontasks.errors import InvalidInputError
from visiontasks.ops import postprocess_detections

from .detector import Detections, Detector, ExportSupport, pick_feature, register_detector
from .two_stage import clean_proposals, fill_empty_proposals

STAGES = ("all", "finetune", "svm")


def context_boxes(boxes: Tensor, warp_size: int, padding: float) -> Tensor:
    """Enlarge xyxy ``boxes`` about their centres so that warping the result to ``warp_size``
    leaves ``padding`` pixels of context around the original box on each side."""
    if padding <= 0:
        return boxes
    if 2 * padding >= warp_size:
        raise InvalidInputError(f"context padding {padding} leaves nothing of a {warp_size}px warp")
    scale = warp_size / (warp_size - 2 * padding)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * scale
    return torch.cat([centre - half, centre + half], 1)


def load_detector_weights(module: nn.Module, path: str | Path) -> None:
    """Load ``module``'s weights from a Lightning checkpoint or a state dict file (keys may carry any
    prefix such as ``model.detector.``), read by :func:`visiontasks.checkpoints.read_state_dict`."""
    state = read_state_dict(path, "detector weights file")
    own = module.state_dict()
    first = next(iter(own))
    prefixes = [k[: -len(first)] for k in state if k.endswith(first)]
    prefix = min(prefixes, key=len) if prefixes else ""
    picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    missing, unexpected = module.load_state_dict({k: v for k, v in picked.items() if k in own}, strict=False)
    if missing:
        warnings.warn(f"{path}: {len(missing)} tensors not in the checkpoint kept their initial values "
                      f"(e.g. {missing[:3]})", stacklevel=2)


@register_detector("rcnn")
class RCNN(Detector):
    """R-CNN: warped proposals -> CNN -> SVM (or softmax) scores + class-specific box regression.

    Args:
        backbone: any registered backbone (its deepest output is globally average pooled).
        num_classes: real classes (the softmax adds background at index 0; SVMs are per class).
        warp_size: side of the warped region (227 in the paper; smaller for small images).
        context_padding: context pixels around the box in the warped frame (16 in the paper).
        representation_size: width of the fc layer whose ReLU output ("fc7") feeds the SVMs.
        regions_per_batch, fg_fraction, fg_iou: fine-tuning mini-batch (128, 0.25, 0.5: 32 fg / 96
            bg), spread evenly over the images of the batch; ground-truth boxes always join it.
        svm_neg_iou, svm_pos_weight, svm_l2: SVM negatives (IoU < 0.3), positive weight, L2 penalty.
        bbox_iou, bbox_ridge: regression training regions (IoU >= 0.6) and ridge penalty.
        score_mode: ``"svm"`` or ``"softmax"``.
        stage: ``"all"``, ``"finetune"`` or ``"svm"`` (see the module docstring).
        init_weights: checkpoint to load into this detector before training (e.g. stage 1's).
        max_proposals_train / max_proposals_test: best-ranked proposals considered per image.
        test_chunk: warped regions per CNN call at test time (memory bound).
        score_thresh, nms_thresh, detections_per_img: post-processing.
    """

    needs_proposals = True
    paper = "R-CNN"
    year = 2014
    export_support = ExportSupport(
        reason="R-CNN needs selective-search proposals for every image, computed outside the network "
               "(scikit-image), and crops and warps each one; export a faster_rcnn instead",
    )
    size_divisible = 1  # regions are warped from the images themselves

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        warp_size: int = 227,
        context_padding: float = 16.0,
        representation_size: int = 1024,
        dropout: float = 0.5,
        regions_per_batch: int = 128,
        fg_fraction: float = 0.25,
        fg_iou: float = 0.5,
        svm_neg_iou: float = 0.3,
        svm_pos_weight: float = 2.0,
        svm_l2: float = 1e-4,
        bbox_iou: float = 0.6,
        bbox_ridge: float = 1e-3,
        score_mode: str = "svm",
        stage: str = "all",
        init_weights: str | None = None,
        max_proposals_train: int = 2000,
        max_proposals_test: int = 2000,
        test_chunk: int = 256,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.3,
        detections_per_img: int = 100,
    ) -> None:
        super().__init__()
        if score_mode not in ("svm", "softmax"):
            raise InvalidInputError(f"score_mode must be 'svm' or 'softmax', got {score_mode!r}")
        if stage not in STAGES:
            raise InvalidInputError(f"stage must be one of {STAGES}, got {stage!r}")
        self.backbone = backbone
        self.num_classes = num_classes
        info = pick_feature(backbone, max_stride=None)  # the deepest output, globally pooled
        self.feature_name, channels = info.name, info.channels
        self.warp_size = int(warp_size)
        self.context_padding = float(context_padding)
        context_boxes(torch.zeros(1, 4), self.warp_size, self.context_padding)  # validate now
        self.fc = nn.Sequential(nn.Linear(channels, representation_size), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.cls_score = nn.Linear(representation_size, num_classes + 1)
        self.svm = nn.Linear(representation_size, num_classes)
        self.bbox_pred = nn.Linear(channels, 4 * num_classes)
        # an untrained regressor leaves boxes unchanged
        nn.init.zeros_(self.bbox_pred.weight)
        nn.init.zeros_(self.bbox_pred.bias)
        nn.init.normal_(self.svm.weight, std=0.01)
        nn.init.zeros_(self.svm.bias)
        self.sampler = BalancedPositiveNegativeSampler(1, fg_fraction)
        self.box_coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
        self.regions_per_batch = regions_per_batch
        self.fg_fraction = fg_fraction
        self.fg_iou = fg_iou
        self.svm_neg_iou = svm_neg_iou
        self.svm_pos_weight = svm_pos_weight
        self.svm_l2 = svm_l2
        self.bbox_iou = bbox_iou
        self.bbox_ridge = bbox_ridge
        self.score_mode = score_mode
        self.stage = stage
        self.max_proposals_train = max_proposals_train
        self.max_proposals_test = max_proposals_test
        self.test_chunk = test_chunk
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        if init_weights:
            load_detector_weights(self, init_weights)
        # a stage's idle parameters are frozen (under DDP every trainable parameter needs a gradient)
        idle = {"svm": self._cnn_modules(), "finetune": [self.svm, self.bbox_pred], "all": []}[stage]
        for module in idle:
            for p in module.parameters():
                p.requires_grad_(False)

    def _cnn_modules(self) -> list[nn.Module]:
        return [self.backbone, self.fc, self.cls_score]

    def train(self, mode: bool = True) -> "RCNN":
        super().train(mode)
        if self.stage == "svm":  # frozen CNN: BatchNorm statistics and dropout stay as at test time
            for module in self._cnn_modules():
                module.eval()
        return self

    # -- the CNN on warped regions ----------------------------------------------------------------
    def warp(self, batch: Tensor, boxes: list[Tensor]) -> Tensor:
        """Warped regions ``[R, C, warp, warp]`` of the per-image ``boxes`` (xyxy px)."""
        rois = [context_boxes(b, self.warp_size, self.context_padding) for b in boxes]
        # roi_align = bilinear crop-and-resize; sampling_ratio -1 averages ceil(roi/warp) samples per
        # output pixel, so large regions are area-averaged rather than aliased
        return roi_align(batch.float(), rois, self.warp_size, 1.0, -1, aligned=True).to(batch.dtype)

    def features(self, warped: Tensor) -> tuple[Tensor, Tensor]:
        """``(pool5 [R, C_backbone], fc7 [R, hidden])`` of warped regions."""
        pool5 = F.adaptive_avg_pool2d(self.backbone(warped)[self.feature_name], 1).flatten(1)
        return pool5, self.fc(pool5)

    # -- training ---------------------------------------------------------------------------------
    def _sample(
        self, props: list[Tensor], targets: list[dict[str, Any]], per_image: int
    ) -> tuple[list[Tensor], Tensor, Tensor, Tensor, Tensor]:
        """Regions per image (GT first), their softmax labels (0 = bg), IoU with each GT box class
        ``[R, C]``, matched GT box ``[R, 4]`` and max IoU ``[R]``."""
        regions, labels, class_iou, matched, best_iou, is_gt = [], [], [], [], [], []
        for p, t in zip(props, targets):
            gt = t["boxes"].reshape(-1, 4).float()
            gl = t["labels"].reshape(-1).long()
            cand = torch.cat([gt, p])
            if len(gt):
                iou = box_iou(cand, gt)
                best, idx = iou.max(1)
            else:
                iou = cand.new_zeros((len(cand), 0))
                best, idx = cand.new_zeros(len(cand)), torch.zeros(len(cand), dtype=torch.long)
            lab = torch.where(best >= self.fg_iou, gl[idx] + 1 if len(gt) else idx, torch.zeros_like(idx))
            self.sampler.batch_size_per_image = per_image
            pos, neg = self.sampler([lab])
            keep = (pos[0] | neg[0]).clone()
            keep[: len(gt)] = True  # ground truth always in: the SVM positives
            sel = torch.nonzero(keep).flatten()
            regions.append(cand[sel])
            labels.append(lab[sel])
            ci = cand.new_zeros((len(sel), self.num_classes))
            for c in gl.unique().tolist():
                ci[:, c] = iou[sel][:, gl == c].max(1).values
            class_iou.append(ci)
            matched.append(gt[idx[sel]] if len(gt) else cand[sel])
            best_iou.append(best[sel])
            flag = torch.zeros(len(sel), dtype=torch.bool, device=cand.device)
            flag[sel < len(gt)] = True
            is_gt.append(flag)
        return regions, torch.cat(labels), torch.cat(class_iou), torch.cat(matched), torch.cat(best_iou), torch.cat(is_gt)

    def _losses(self, regions, labels, class_iou, matched, best_iou, is_gt, pool5, fc7) -> dict[str, Tensor]:
        losses: dict[str, Tensor] = {}
        if self.stage in ("all", "finetune"):
            logits = self.cls_score(self.dropout(fc7))
            losses["loss_classifier"] = F.cross_entropy(logits.float(), labels)
        if self.stage in ("all", "svm"):
            # per-class SVMs: +1 = a GT box of the class, -1 = IoU < svm_neg_iou with all of its boxes
            margin = self.svm(fc7.detach()).float()
            gt_class = torch.zeros_like(margin, dtype=torch.bool)
            gt_rows = torch.nonzero(is_gt).flatten()
            gt_class[gt_rows, labels[gt_rows] - 1] = True
            neg = class_iou < self.svm_neg_iou
            y = torch.where(gt_class, 1.0, -1.0)
            weight = torch.where(gt_class, self.svm_pos_weight, 1.0) * (gt_class | neg)
            hinge = (weight * F.relu(1.0 - y * margin)).sum() / weight.sum().clamp(min=1.0)
            losses["loss_svm"] = hinge + 0.5 * self.svm_l2 * self.svm.weight.float().pow(2).sum()
            # class-specific box regression on pool5 for regions with IoU >= bbox_iou
            rows = torch.nonzero((best_iou >= self.bbox_iou) & (labels > 0)).flatten()
            deltas = self.bbox_pred(pool5.detach()).float().reshape(-1, self.num_classes, 4)
            ridge = 0.5 * self.bbox_ridge * self.bbox_pred.weight.float().pow(2).sum()
            if len(rows):
                region_boxes = torch.cat(regions)[rows]
                target = self.box_coder.encode_single(matched[rows], region_boxes)
                pred = deltas[rows, labels[rows] - 1]
                losses["loss_box_reg"] = F.mse_loss(pred, target, reduction="sum") / len(rows) + ridge
            else:
                losses["loss_box_reg"] = deltas.sum() * 0.0 + ridge
        return losses

    # -- inference --------------------------------------------------------------------------------
    @torch.no_grad()
    def detect(self, batch: Tensor, sizes: list[tuple[int, int]], proposals: list[Tensor] | None) -> Detections:
        """Every proposal through the CNN (in chunks), scored, regressed, post-processed."""
        assert proposals is not None  # checked in Detector.forward (needs_proposals)
        props = clean_proposals(proposals, self.max_proposals_test)
        out = []
        for i, p in enumerate(props):
            scores, deltas = [], []
            for start in range(0, len(p), self.test_chunk):
                chunk = p[start: start + self.test_chunk]
                pool5, fc7 = self.features(self.warp(batch[i: i + 1], [chunk]))
                if self.score_mode == "svm":
                    scores.append(torch.sigmoid(self.svm(fc7).float()))
                else:
                    scores.append(F.softmax(self.cls_score(fc7).float(), -1)[:, 1:])
                deltas.append(self.bbox_pred(pool5).float())
            if not scores:
                empty = batch.new_zeros((0,), dtype=torch.float32)
                out.append({"boxes": empty.reshape(0, 4), "scores": empty,
                            "labels": torch.zeros(0, dtype=torch.long, device=batch.device)})
                continue
            s = torch.cat(scores)  # [P, C]
            boxes = self.box_coder.decode_single(torch.cat(deltas), p)  # [P, 4C]
            labels = torch.arange(self.num_classes, device=p.device).expand(len(p), -1)
            out.append(postprocess_detections(boxes, s, labels, sizes[i], self.score_thresh, self.nms_thresh,
                                              self.detections_per_img))
        return out

    def losses(self, batch: Tensor, sizes: list[tuple[int, int]], targets: list[dict[str, Any]],
               proposals: list[Tensor] | None) -> dict[str, Tensor]:
        """The losses of ``stage`` on a mini-batch of warped regions."""
        assert proposals is not None  # checked in Detector.forward (needs_proposals)
        props = fill_empty_proposals(clean_proposals(proposals, self.max_proposals_train), targets, sizes)
        per_image = max(1, self.regions_per_batch // len(props))
        regions, labels, class_iou, matched, best_iou, is_gt = self._sample(props, targets, per_image)
        pool5, fc7 = self.features(self.warp(batch, regions))
        return self._losses(regions, labels, class_iou, matched, best_iou, is_gt, pool5, fc7)


__all__ = ["RCNN", "context_boxes", "load_detector_weights"]
