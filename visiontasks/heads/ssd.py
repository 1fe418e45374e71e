"""SSD (Liu et al., ECCV 2016) on any registered backbone, from torchvision's SSD parts.

``backbone -> source maps (several strides) -> extra layers down to 1 x 1 -> one 3x3 conv per map
for class scores and one for box offsets, per default box``. What is torchvision's
(``torchvision.models.detection.ssd`` / ``anchor_utils``): the default boxes (``DefaultBoxGenerator``),
the per-map 3x3 classification and regression convolutions (``SSDHead``), the matching
(``SSDMatcher``: IoU >= 0.5, and every ground truth to its best default box), the box coding
(``BoxCoder`` with weights 10, 10, 5, 5, the paper's variances 0.1 / 0.2) and the loss and decoding
themselves: ``SSD.compute_loss`` (smooth-L1 on the positives + softmax cross-entropy on the positives
and the hardest negatives, 3 per positive, both divided by the number of positives) and
``SSD.postprocess_detections`` (softmax, per class the scores above ``score_thresh``, the best
``topk_candidates``, per-class NMS, the best ``detections_per_img``) are called on this module, which
carries the attributes they read. What is ours is the glue to our backbone contract:

* **sources** are chosen by stride from ``backbone.feature_info``: every output with stride >=
  ``min_stride`` (8: ResNet ``layer2..4``, MobileNet v2 ``stage3..5``), the deepest output at each of
  ``feature_strides`` (e.g. ``[16, 32]``, whatever the backbone), or the outputs named in ``sources``;
* **the VGG layout** (the paper's SSD300, on by default for the VGG backbones, ``vgg_fc``): conv4_3
  (stage 4 before its max pooling; pool3 in ceil mode so that 300 px give 38 x 38) with L2
  normalisation and a learned scale (initial 20), then pool4, conv5_x, a 3x3 stride-1 pool5 and
  fc6 / fc7 as convolutions (fc6 3x3 with dilation 6, 1024 channels; fc7 1x1, 1024), exactly
  torchvision's ``SSDFeatureExtractorVGG``;
* **extra layers** after the deepest source, each a 1x1 convolution to half its width and a 3x3
  convolution: with stride 2 while the map (at ``image_size``) is larger than 5, then without
  padding (5 -> 3 -> 1), until the map is 1 x 1 (the paper's conv8_2 .. conv11_2 for 300 px on VGG:
  19 -> 10 -> 5 -> 3 -> 1). A padding-free convolution pads a map smaller than its kernel up to it,
  so images smaller than ``image_size`` still work;
* **default boxes**: scale ``s_k`` from ``s_min`` = 0.2 to ``s_max`` = 0.9 evenly over the maps (the
  paper's formula; or ``scales`` given, one more than maps), aspect ratios {1, 2, 1/2} on the first
  map and the last two and {1, 2, 3, 1/2, 1/3} on the others (``aspect_ratios``), plus the extra
  square box of side ``sqrt(s_k s_k+1)``; centred on the cells (``(i + 0.5) / |f_k|``) or, with
  ``steps``, at ``(i + 0.5) * step`` pixels as in torchvision's SSD300.

Images arrive resized and normalised by the data pipeline (torchvision's ``GeneralizedRCNNTransform``
is not used); they are only padded into a batch (bottom/right). The background is class 0 inside
(labels are shifted by +1 for torchvision's loss and back by -1 on the way out). Loss and decoding run
in fp32 whatever the autocast dtype.

``TORCHVISION_SSD300`` holds the settings of torchvision's ``ssd300_vgg16`` (the Caffe SSD300 COCO
default boxes); with ``backbone: vgg16`` they make our model torchvision's, parameter for parameter,
and ``weights`` loads its COCO weights (``COCO_V1``) or a state_dict saved from it.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.ssd import SSD as TorchvisionSSD
from torchvision.models.detection.ssd import SSDHead
from torchvision.ops import box_iou

from visiontasks.backbones import Backbone
from visiontasks.errors import InvalidInputError

from .detector import (Detections, Detector, ExportSupport, Losses, features_at_strides, register_detector,
                       select_features)

# torchvision's ssd300_vgg16 (Caffe SSD300 on COCO): 21/45/99/153/207/261/315 px default boxes of 300
TORCHVISION_SSD300: dict[str, Any] = {
    "image_size": 300,
    "scales": [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
    "steps": [8, 16, 32, 64, 100, 300],
    "aspect_ratios": [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
}


class L2Norm(nn.Module):
    """The paper's conv4_3 normalisation: each position's channel vector scaled to unit L2 norm, then
    multiplied by a learned per-channel scale (initially ``scale``). ``[N, C, H, W] -> [N, C, H, W]``."""

    def __init__(self, channels: int, scale: float = 20.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels) * scale)  # torchvision's ``scale_weight``

    def forward(self, x: Tensor) -> Tensor:
        return self.weight.view(1, -1, 1, 1) * F.normalize(x)


class ValidConv2d(nn.Conv2d):
    """A convolution without padding (the paper's conv10_2 / conv11_2) that first zero-pads a map
    smaller than its kernel up to the kernel's size (bottom/right), so it gives 1 x 1 rather than an
    error on small images; on maps at least as large as the kernel it is ``nn.Conv2d``."""

    def forward(self, x: Tensor) -> Tensor:
        kh, kw = self.kernel_size
        ph, pw = max(kh - x.shape[-2], 0), max(kw - x.shape[-1], 0)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        return super().forward(x)


def _xavier_init(module: nn.Module) -> None:
    """torchvision's SSD initialisation of the layers it adds (fc6/fc7, extras)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def extra_layers(in_channels: int, size: int, channels: Sequence[int]) -> tuple[nn.ModuleList, list[int]]:
    """The extra feature layers after a ``size x size`` map of ``in_channels`` channels, down to 1 x 1.

    Block ``i`` (output width ``channels[i]``, the last entry repeated when there are more blocks):
    1x1 conv to half that width, ReLU, 3x3 conv (stride 2, padding 1 while the map is larger than 5,
    else no padding), ReLU. Returns the blocks and their output channels."""
    blocks, outs = nn.ModuleList(), []
    while size > 1:
        out = int(channels[min(len(blocks), len(channels) - 1)])
        mid = max(out // 2, 1)
        if size > 5:
            conv: nn.Conv2d = nn.Conv2d(mid, out, kernel_size=3, stride=2, padding=1)
            size = (size + 1) // 2
        else:
            conv, size = ValidConv2d(mid, out, kernel_size=3), max(size - 2, 1)
        blocks.append(nn.Sequential(nn.Conv2d(in_channels, mid, kernel_size=1), nn.ReLU(inplace=True),
                                    conv, nn.ReLU(inplace=True)))
        outs.append(out)
        in_channels = out
    _xavier_init(blocks)
    return blocks, outs


def is_vgg(backbone: Backbone) -> bool:
    """Whether ``backbone`` is a VGG (five ``nn.Sequential`` stages, each closed by a max pooling,
    strides 2 .. 32): the layout SSD300 was designed on."""
    stages = list(backbone.stages.values())
    return (len(stages) == 5 and [f.stride for f in backbone.stage_info] == [2, 4, 8, 16, 32]
            and all(isinstance(s, nn.Sequential) and isinstance(s[-1], nn.MaxPool2d) for s in stages))


def default_aspect_ratios(levels: int) -> list[list[float]]:
    """The paper's SSD300 pattern: {1, 2, 1/2} on the first map and the last two, {1, 2, 3, 1/2, 1/3}
    on the others (the 1 and the reciprocals are implied by ``DefaultBoxGenerator``)."""
    return [[2.0] if k == 0 or k >= levels - 2 else [2.0, 3.0] for k in range(levels)]


@register_detector("ssd")
class SSD(Detector):
    """SSD: ``backbone -> sources [+ VGG fc6/fc7] -> extra layers -> SSDHead -> default boxes``.

    Args:
        backbone: a registered backbone (any out_indices; the needed stages are selected by name).
        num_classes: real classes (the background is added internally).
        sources: backbone outputs the boxes are predicted from, by name (default: every output with
            stride >= ``min_stride``); not with the VGG layout, whose sources are conv4_3 and fc7.
        feature_strides: instead of ``sources``, the strides of the outputs used (the deepest output
            at each; e.g. ``[8, 16, 32]``), which survive a change of backbone.
        min_stride: the shallowest stride used when neither ``sources`` nor ``feature_strides`` is given.
        vgg_fc: the paper's VGG layout (conv4_3 + L2 norm, fc6/fc7 as dilated convolutions); ``None``:
            on for VGG backbones.
        l2_norm: L2-normalise the first source with a learned scale; ``None``: with the VGG layout.
        extra_channels: output channels of the extra blocks (the paper's 512, 256, 256, 256; the last
            entry is repeated when more blocks are needed).
        image_size: the side of the images the data pipeline produces: it sets how many extra blocks
            bring the deepest map to 1 x 1 (nothing else; other sizes work too).
        s_min, s_max: default-box scales of the first and the last map (fractions of the image side).
        scales: explicit scales instead, one per map plus one (the last only sizes the extra box).
        aspect_ratios: per map a list of ratios > 1 (each adds r and 1/r), or one list for every map;
            default :func:`default_aspect_ratios`.
        steps: per map the pixel step of the default-box centres (torchvision's SSD300: 8, 16, 32, 64,
            100, 300); ``None``: cell centres spread evenly over the image (the paper).
        iou_thresh: matching threshold (also each ground truth gets its best default box).
        neg_pos_ratio: hard negatives per positive in the classification loss.
        score_thresh, nms_thresh, detections_per_img, topk_candidates: decoding (torchvision's SSD
            defaults 0.01, 0.45, 200, 400).
        size_divisible: batch padding multiple (1: SSD sees the images as given).
        weights: torchvision's ``ssd300_vgg16`` weights (``backbone: vgg16`` with the settings of
            ``TORCHVISION_SSD300``): an ``SSD300_VGG16_Weights`` name such as ``COCO_V1`` (downloaded
            only when given) or a state_dict file saved from that model; another class count
            re-initialises the class-specific layers with a warning (see ``detector_weights``).
    """

    paper = "SSD"
    year = 2016
    export_support = ExportSupport(
        formats=("onnx", "torchscript"), dynamic_size=False,
        reason="torch.export cannot trace torchvision's per-class NMS (a data-dependent box count); "
               "use --format onnx or torchscript",
    )

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        sources: Sequence[str] | None = None,
        feature_strides: Sequence[int] | None = None,
        min_stride: int = 8,
        vgg_fc: bool | None = None,
        l2_norm: bool | None = None,
        extra_channels: Sequence[int] = (512, 256, 256, 256),
        image_size: int = 300,
        s_min: float = 0.2,
        s_max: float = 0.9,
        scales: Sequence[float] | None = None,
        aspect_ratios: Sequence[float] | Sequence[Sequence[float]] | None = None,
        steps: Sequence[int] | None = None,
        iou_thresh: float = 0.5,
        neg_pos_ratio: float = 3.0,
        score_thresh: float = 0.01,
        nms_thresh: float = 0.45,
        detections_per_img: int = 200,
        topk_candidates: int = 400,
        size_divisible: int = 1,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.size_divisible = size_divisible
        self.vgg_fc = is_vgg(backbone) if vgg_fc is None else bool(vgg_fc)
        if self.vgg_fc:
            if not is_vgg(backbone):
                raise ValueError("vgg_fc: true needs a VGG backbone (vgg11 .. vgg19, with or without _bn)")
            if sources is not None or feature_strides is not None:
                raise InvalidInputError("with the VGG layout the sources are conv4_3 and fc7; leave sources and "
                                        "feature_strides unset (or set vgg_fc: false)")
            self.source_names: list[str] = []
            self.backbone = select_features(backbone, [backbone.stage_info[-1].name])
            stages = list(self.backbone.stages.values())
            stages[2][-1].ceil_mode = True  # pool3: 75 -> 38 at 300 px, as the paper (Caffe pooling)
            self.fc: nn.Module | None = nn.Sequential(
                nn.MaxPool2d(kernel_size=3, stride=1, padding=1),  # pool5 without reduction
                nn.Conv2d(backbone.stage_info[4].channels, 1024, kernel_size=3, padding=6, dilation=6),  # fc6
                nn.ReLU(inplace=True),
                nn.Conv2d(1024, 1024, kernel_size=1),  # fc7
                nn.ReLU(inplace=True),
            )
            _xavier_init(self.fc)
            channels, strides = [backbone.stage_info[3].channels, 1024], [8, 16]
        else:
            infos = backbone.feature_info
            if sources is not None and feature_strides is not None:
                raise InvalidInputError(f"sources={list(sources)} and feature_strides={list(feature_strides)}: "
                                        "give one of them (feature_strides picks the outputs by stride)")
            if feature_strides is not None:
                chosen = features_at_strides(backbone, feature_strides)
            elif sources is not None:
                chosen = [f for f in infos if f.name in set(sources)]
            else:
                chosen = [f for f in infos if f.stride >= min_stride]
            if sources is not None and len(chosen) != len(set(sources)):
                raise InvalidInputError(f"sources={list(sources)}: the backbone has outputs {[f.name for f in infos]} "
                                        "(feature_strides picks them by stride, e.g. [8, 16, 32])")
            if not chosen:
                raise InvalidInputError(f"min_stride={min_stride}: no backbone output has stride >= {min_stride}: "
                                        f"{[(f.name, f.stride) for f in infos]}")
            self.source_names = [f.name for f in chosen]
            self.backbone = select_features(backbone, self.source_names)
            self.fc = None
            channels, strides = [f.channels for f in chosen], [f.stride for f in chosen]
        use_l2 = self.vgg_fc if l2_norm is None else bool(l2_norm)
        self.l2norm = L2Norm(channels[0]) if use_l2 else None
        self.extras, extra_out = extra_layers(channels[-1], math.ceil(image_size / strides[-1]), extra_channels)
        channels = channels + extra_out
        levels = len(channels)

        ratios = self._ratios(aspect_ratios, levels)
        if scales is not None and len(scales) != levels + 1:
            raise ValueError(f"scales: give {levels + 1} values ({levels} maps plus one), got {list(scales)}")
        if steps is not None and len(steps) != levels:
            raise ValueError(f"steps: give one per map ({levels}), got {list(steps)}")
        self.anchor_generator = DefaultBoxGenerator(
            ratios, min_ratio=s_min, max_ratio=s_max, scales=None if scales is None else [float(s) for s in scales],
            steps=None if steps is None else [int(s) for s in steps],
        )
        self.head = SSDHead(channels, self.anchor_generator.num_anchors_per_location(), num_classes + 1)
        # the attributes torchvision's SSD.compute_loss / postprocess_detections read
        self.box_coder = det_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        self.proposal_matcher = det_utils.SSDMatcher(iou_thresh)
        self.neg_to_pos_ratio = float(neg_pos_ratio)
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_img, self.topk_candidates = detections_per_img, topk_candidates
        if weights is not None:
            from .detector_weights import load_torchvision_ssd

            load_torchvision_ssd(self, weights, num_classes)

    @staticmethod
    def _ratios(aspect_ratios: Sequence[Any] | None, levels: int) -> list[list[float]]:
        if aspect_ratios is None:
            return default_aspect_ratios(levels)
        values = list(aspect_ratios)
        if all(isinstance(r, (int, float)) for r in values):
            return [[float(r) for r in values]] * levels
        if len(values) != levels:
            raise ValueError(f"aspect_ratios has {len(values)} lists, the model has {levels} maps: give one per map "
                             "or a single list for all")
        return [[float(r) for r in level] for level in values]

    # -- network ----------------------------------------------------------------------------------
    def features(self, x: Tensor) -> list[Tensor]:
        """The maps the boxes are predicted from, shallow to deep, for a padded batch ``[N, C, H, W]``."""
        if self.fc is not None:  # VGG: conv4_3 inside stage 4, fc7 after stage 5's convolutions
            if x.shape[1] != self.backbone.in_chans:  # what Backbone.forward checks, bypassed here
                raise ValueError(f"expected input [N, {self.backbone.in_chans}, H, W], got {list(x.shape)}")
            stages = list(self.backbone.stages.values())
            for stage in stages[:3]:
                x = stage(x)
            for layer in list(stages[3])[:-1]:
                x = layer(x)
            maps = [x]
            x = stages[3][-1](x)  # pool4
            for layer in list(stages[4])[:-1]:  # conv5_x; pool5 is replaced by fc's 3x3 stride-1 pool
                x = layer(x)
            maps.append(self.fc(x))
        else:
            out = self.backbone(x)
            maps = [out[n] for n in self.source_names]
        if self.l2norm is not None:
            maps[0] = self.l2norm(maps[0])
        x = maps[-1]
        for block in self.extras:
            x = block(x)
            maps.append(x)
        return maps

    def outputs(self, batch: Tensor, sizes: list[tuple[int, int]]) -> tuple[dict[str, Tensor], list[Tensor]]:
        """fp32 head outputs (``bbox_regression [N, A, 4]``, ``cls_logits [N, A, C + 1]``) and the
        default boxes of each image (``[A, 4]`` xyxy pixels of the padded batch)."""
        maps = self.features(batch)
        head = {k: v.float() for k, v in self.head(maps).items()}
        # the generator reads only the maps' sizes, dtype and device: fp32 shape-only stand-ins keep
        # the default boxes in fp32 under autocast without copying the maps
        shapes = [m.new_empty((0, 0, *m.shape[-2:]), dtype=torch.float32) for m in maps]
        return head, self.anchor_generator(ImageList(batch, sizes), shapes)

    # -- losses and decoding (torchvision's, on this module) -----------------------------------------
    def losses(self, batch: Tensor, sizes: list[tuple[int, int]], targets: list[dict[str, Any]],
               proposals: list[Tensor] | None) -> Losses:
        """``{bbox_regression, classification}`` (torchvision's ``SSD.compute_loss``)."""
        head, anchors = self.outputs(batch, sizes)
        with torch.autocast(device_type=batch.device.type, enabled=False):
            tv_targets, matched = [], []
            for t, a in zip(targets, anchors):
                boxes = t["boxes"].reshape(-1, 4).to(device=a.device, dtype=torch.float32)
                labels = t["labels"].reshape(-1).to(a.device).long() + 1  # background = 0
                tv_targets.append({"boxes": boxes, "labels": labels})
                if boxes.numel() == 0:
                    matched.append(torch.full((a.shape[0],), -1, dtype=torch.int64, device=a.device))
                else:
                    matched.append(self.proposal_matcher(box_iou(boxes, a)))
            return TorchvisionSSD.compute_loss(self, tv_targets, head, anchors, matched)  # type: ignore[arg-type]

    def detect(self, batch: Tensor, sizes: list[tuple[int, int]], proposals: list[Tensor] | None) -> Detections:
        """Per image ``{boxes [D, 4] xyxy px, scores [D], labels [D] int64 0-based}``."""
        head, anchors = self.outputs(batch, sizes)
        with torch.autocast(device_type=batch.device.type, enabled=False):
            dets = TorchvisionSSD.postprocess_detections(self, head, anchors, sizes)  # type: ignore[arg-type]
        return [{"boxes": d["boxes"], "scores": d["scores"], "labels": d["labels"] - 1} for d in dets]
