"""YOLOv1 (Redmon et al., 2016) on any registered backbone.

``backbone -> deepest feature map -> 2 conv layers -> adaptive average pooling to S x S -> FC ->
FC -> [N, S, S, B*5 + C]``. Per cell: B boxes ``(x, y, sqrt(w), sqrt(h), confidence)`` then C class
probabilities; ``x, y`` are the box centre's offset inside the cell, ``w, h`` the box size relative
to the (padded) input image, all in [0, 1].

Differences from the paper, on purpose:

* the backbone is any registered one (the paper's is a 24-layer Darknet); its deepest feature map is
  pooled to S x S with ``AdaptiveAvgPool2d`` so that any input size the backbone accepts works
  (448 x 448 as in the paper gives a 14 x 14 map, pooled 2 x 2; smaller inputs give smaller maps,
  which the pooling stretches). As in the paper, the fully connected layers see the whole image.
* the two head convolutions use BatchNorm (trains from scratch reliably; YOLOv2 added it too);
* the last layer is linear as in the paper (``activation="linear"``; decoding clamps the values to
  [0, 1]); ``activation="sigmoid"`` squashes them instead (sigmoid, softmax for the classes), which
  divides the gradients by 4 or more and learns markedly slower from scratch;
* the confidence outputs start at a small ``prior`` (bias initialisation), not at 0.5.

The loss is the paper's sum-squared error (λ_coord = 5, λ_noobj = 0.5, square roots of w and h, of
the B predictors of a cell holding an object the one with the highest IoU is responsible, the
confidence target of the responsible predictor is that IoU), summed over the grid and averaged over
the batch. It is computed in fp32 with autocast off, so fp16/bf16 training is safe. A cell holds at
most one object (the paper's design): when several object centres fall in one cell, the largest
object is assigned there.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visiontasks.backbones import Backbone
from visiontasks.errors import InvalidInputError
from visiontasks.ops import paired_box_iou, postprocess_detections

from .detector import Detections, Detector, ExportSupport, pick_feature, register_detector, select_features


class _ChannelsLast(nn.Module):
    """``[N, K, S, S] -> [N, S, S, K]`` (the layout of the fc head's output)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 2, 3, 1)


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.1, inplace=True)
    )


GRID_SIZE = 7  # S, the paper's


@register_detector("yolov1")
class YOLOv1(Detector):
    """YOLOv1 detector.

    Args:
        backbone: a registered backbone; its deepest output feeds the head, or the one named
            ``feature``, or the deepest at ``feature_stride`` (e.g. 8; survives a change of backbone).
        num_classes: C, real classes (no background class: "no object" is the confidence).
        grid_size: S; boxes_per_cell: B.
        head: ``fc`` (the paper's: two conv layers, then fully connected layers over the whole
            S x S x hidden map) or ``conv`` (a 1 x 1 convolution predicts each cell from its own
            pooled features, as later fully convolutional YOLOs; learns localisation faster).
        hidden_channels: channels of the two head convolutions (paper: 1024).
        representation_size: width of the first fully connected layer (paper: 4096); dropout after
            it (paper 0.5).
        prior: initial confidence of every predictor (bias initialisation of the last layer).
        activation: ``linear`` outputs as in the paper (clamped to [0, 1] when decoding) or
            ``sigmoid`` (box terms and confidence) + ``softmax`` (class probabilities).
        lambda_coord, lambda_noobj: loss weights (paper: 5 and 0.5).
        rescore: confidence target = IoU of the responsible box with its object (paper); else 1.
        score_thresh: minimum class-specific confidence (class prob x confidence) kept at decoding.
        nms_thresh: IoU threshold of the per-class NMS (``ops.postprocess_detections``: torchvision's ``nms``
            with ``batched_nms``'s class offsets).
        detections_per_img: detections kept per image (highest scores).
        size_divisible: batch padding multiple.
    """

    paper = "YOLOv1"
    year = 2016
    # decoding included; one input size per export (the S x S grid pooling and the box scaling are
    # fixed to the size exported at)
    export_support = ExportSupport(
        formats=("onnx", "torchscript", "torch_export"), dynamic_size=False,
        reason="YOLOv1 exports at one input size (its S x S grid pooling and box scaling are fixed to it)",
    )

    @classmethod
    def box_priors(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The S x S grid of cells a box centre falls in (``grid_size``, default 7)."""
        return {"kind": "grid", "S": int(settings.get("grid_size", GRID_SIZE))}

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        grid_size: int = GRID_SIZE,
        boxes_per_cell: int = 2,
        feature: str | None = None,
        feature_stride: int | None = None,
        head: str = "fc",
        hidden_channels: int = 1024,
        representation_size: int = 4096,
        dropout: float = 0.5,
        lambda_coord: float = 5.0,
        lambda_noobj: float = 0.5,
        rescore: bool = True,
        score_thresh: float = 0.01,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        size_divisible: int = 32,
        prior: float = 0.05,
        activation: str = "linear",
    ) -> None:
        super().__init__()
        chosen = pick_feature(backbone, feature, max_stride=None, stride=feature_stride)
        self.feature_name = chosen.name
        self.backbone = select_features(backbone, [chosen.name])
        self.S, self.B, self.C = grid_size, boxes_per_cell, num_classes
        self.num_classes = num_classes
        self.lambda_coord, self.lambda_noobj, self.rescore = lambda_coord, lambda_noobj, rescore
        self.score_thresh, self.nms_thresh, self.detections_per_img = score_thresh, nms_thresh, detections_per_img
        self.size_divisible = size_divisible
        if activation not in ("linear", "sigmoid"):
            raise InvalidInputError(f"activation must be 'linear' (the paper's) or 'sigmoid', got {activation!r}")
        self.activation = activation
        out_per_cell = boxes_per_cell * 5 + num_classes
        if head == "fc":  # the paper's: the fully connected layers see the whole image
            self.head = nn.Sequential(
                _conv_bn(chosen.channels, hidden_channels),
                _conv_bn(hidden_channels, hidden_channels),
                nn.AdaptiveAvgPool2d(grid_size),
                nn.Flatten(),
                nn.Linear(hidden_channels * grid_size * grid_size, representation_size),
                nn.LeakyReLU(0.1, inplace=True),
                nn.Dropout(dropout),
                nn.Linear(representation_size, grid_size * grid_size * out_per_cell),
            )
        elif head == "conv":  # each cell predicted from its own region of the feature map
            self.head = nn.Sequential(
                _conv_bn(chosen.channels, hidden_channels),
                _conv_bn(hidden_channels, hidden_channels),
                nn.AdaptiveAvgPool2d(grid_size),
                nn.Dropout(dropout),
                nn.Conv2d(hidden_channels, out_per_cell, 1),
                _ChannelsLast(),
            )
        else:
            raise InvalidInputError(f"head must be 'fc' (the paper's) or 'conv', got {head!r}")
        self._init_confidence(prior)

    def _init_confidence(self, prior: float) -> None:
        """Start every confidence at ``prior`` (the last layer's bias), not at sigmoid(0) = 0.5: the
        no-object term then does not dominate the first steps (RetinaNet's prior initialisation)."""
        last = [m for m in self.head.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
        value = math.log(prior / (1 - prior)) if self.activation == "sigmoid" else prior
        with torch.no_grad():
            bias = last.bias.view(-1, self.B * 5 + self.C) if isinstance(last, nn.Linear) else last.bias.view(1, -1)
            for k in range(self.B):
                bias[:, k * 5 + 4] = value

    # -- raw output -------------------------------------------------------------------------------
    def raw(self, x: Tensor) -> Tensor:
        """``[N, 3, H, W] -> [N, S, S, B*5 + C]`` logits (before sigmoid/softmax)."""
        feats = self.backbone(x)[self.feature_name]
        return self.head(feats).reshape(x.shape[0], self.S, self.S, self.B * 5 + self.C)

    def activate(self, raw: Tensor) -> tuple[Tensor, Tensor]:
        """``(boxes [N, S, S, B, 5] (x, y, sqrt w, sqrt h, conf), class probs [N, S, S, C])``.

        ``linear`` (the paper's): the raw outputs, regressed directly by the sum-squared error (the
        loss sees them unclamped; decoding clamps them to [0, 1]). ``sigmoid``: squashed into
        (0, 1), class probabilities by softmax.
        """
        n = raw.shape[0]
        boxes = raw[..., : self.B * 5].reshape(n, self.S, self.S, self.B, 5)
        probs = raw[..., self.B * 5 :]
        if self.activation == "sigmoid":
            return torch.sigmoid(boxes), torch.softmax(probs, dim=-1)
        return boxes, probs

    def decode_boxes(self, boxes: Tensor) -> Tensor:
        """Cell-relative ``(x, y, sqrt w, sqrt h)`` -> xyxy normalised to the input [0, 1]."""
        S = self.S
        ar = torch.arange(S, device=boxes.device, dtype=boxes.dtype)
        cx = (boxes[..., 0] + ar.view(1, 1, S, 1)) / S  # column index j on dim 2
        cy = (boxes[..., 1] + ar.view(1, S, 1, 1)) / S  # row index i on dim 1
        w, h = boxes[..., 2] ** 2, boxes[..., 3] ** 2
        return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)

    # -- targets and loss -------------------------------------------------------------------------
    def encode_targets(
        self, targets: list[dict[str, Any]], height: int, width: int, device: torch.device
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Grid targets for a batch padded to ``height x width``.

        Returns ``obj [N, S, S] bool`` (cell holds an object), ``cell_box [N, S, S, 4]`` (x, y offsets
        in the cell, sqrt w, sqrt h), ``box_xyxy [N, S, S, 4]`` normalised, ``cls [N, S, S, C]`` one-hot.
        """
        S, C, n = self.S, self.C, len(targets)
        obj = torch.zeros(n, S * S, dtype=torch.bool, device=device)
        cell_box = torch.zeros(n, S * S, 4, device=device)
        box_xyxy = torch.zeros(n, S * S, 4, device=device)
        cls = torch.zeros(n, S * S, C, device=device)
        scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=device)
        for b, t in enumerate(targets):
            boxes = t["boxes"].to(device=device, dtype=torch.float32) / scale
            labels = t["labels"].to(device)
            if boxes.numel() == 0:
                continue
            boxes = boxes.clamp(0, 1)
            cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
            w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            j = (cx * S).floor().long().clamp(0, S - 1)
            i = (cy * S).floor().long().clamp(0, S - 1)
            cell = i * S + j
            # one object per cell: the largest (ties: the first) wins, deterministically
            area = w * h
            best = torch.full((S * S,), -1.0, device=device).scatter_reduce(0, cell, area, "amax")
            is_best = area >= best[cell]
            idx = torch.arange(len(cell), device=device)
            first = torch.full((S * S,), len(cell), device=device, dtype=torch.long).scatter_reduce(
                0, cell[is_best], idx[is_best], "amin"
            )
            keep = first[cell] == idx
            cell, k = cell[keep], keep.nonzero().squeeze(1)
            obj[b, cell] = True
            cell_box[b, cell] = torch.stack(
                [cx[k] * S - j[k], cy[k] * S - i[k], w[k].sqrt(), h[k].sqrt()], dim=1
            )
            box_xyxy[b, cell] = boxes[k]
            cls[b, cell] = F.one_hot(labels[k], C).float()
        return (obj.view(n, S, S), cell_box.view(n, S, S, 4), box_xyxy.view(n, S, S, 4),
                cls.view(n, S, S, C))

    def loss(self, raw: Tensor, targets: list[dict[str, Any]], height: int, width: int) -> dict[str, Tensor]:
        """The paper's loss on raw outputs ``[N, S, S, B*5 + C]`` (fp32, autocast off)."""
        with torch.autocast(device_type=raw.device.type, enabled=False):
            raw = raw.float()
            n = raw.shape[0]
            boxes, probs = self.activate(raw)
            obj, t_cell, t_xyxy, t_cls = self.encode_targets(targets, height, width, raw.device)
            with torch.no_grad():
                pred_xyxy = self.decode_boxes(boxes[..., :4].clamp(0, 1))  # [N, S, S, B, 4]
                iou = paired_box_iou(pred_xyxy, t_xyxy.unsqueeze(3))  # [N, S, S, B]
                best = iou.argmax(dim=-1, keepdim=True)
                resp = torch.zeros_like(iou, dtype=torch.bool).scatter_(-1, best, True) & obj.unsqueeze(-1)
                conf_target = iou if self.rescore else torch.ones_like(iou)
            resp_f = resp.float()
            coord = ((boxes[..., :4] - t_cell.unsqueeze(3)) ** 2).sum(-1)
            loss_coord = self.lambda_coord * (coord * resp_f).sum() / n
            conf = boxes[..., 4]
            loss_obj = (((conf - conf_target) ** 2) * resp_f).sum() / n
            loss_noobj = self.lambda_noobj * ((conf**2) * (1 - resp_f)).sum() / n
            loss_cls = (((probs - t_cls) ** 2).sum(-1) * obj.float()).sum() / n
        return {"loss_coord": loss_coord, "loss_obj": loss_obj, "loss_noobj": loss_noobj, "loss_cls": loss_cls}

    # -- decoding ---------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, raw: Tensor, sizes: list[tuple[int, int]], height: int, width: int) -> list[dict[str, Tensor]]:
        """Per image: class-specific confidence (class prob x confidence) > ``score_thresh``, boxes
        clipped to the image, per-class NMS, the best ``detections_per_img``."""
        with torch.autocast(device_type=raw.device.type, enabled=False):
            boxes, probs = self.activate(raw.float())
            boxes, probs = boxes.clamp(0, 1), probs.clamp(0, 1)
            xyxy = self.decode_boxes(boxes[..., :4]) * torch.tensor(
                [width, height, width, height], device=raw.device, dtype=torch.float32
            )
            scores = (boxes[..., 4:5] * probs.unsqueeze(3)).reshape(len(sizes), -1, self.C)  # [N, S*S*B, C]
            xyxy = xyxy.reshape(len(sizes), -1, 1, 4).expand(-1, -1, self.C, -1)  # one box per class
            labels = torch.arange(self.C, device=raw.device).expand_as(scores[0])
            return [
                postprocess_detections(xyxy[b], scores[b], labels, size, self.score_thresh, self.nms_thresh,
                                       self.detections_per_img, min_size=0.0)
                for b, size in enumerate(sizes)
            ]

    def losses(self, batch: Tensor, sizes: list[tuple[int, int]], targets: list[dict[str, Any]],
               proposals: list[Tensor] | None) -> dict[str, Tensor]:
        """``{loss_coord, loss_obj, loss_noobj, loss_cls}`` (the grid spans the padded batch)."""
        return self.loss(self.raw(batch), targets, *batch.shape[-2:])

    def detect(self, batch: Tensor, sizes: list[tuple[int, int]], proposals: list[Tensor] | None) -> Detections:
        """Per image ``{boxes [D, 4] xyxy px, scores [D], labels [D] int64 0-based}``."""
        return self.decode(self.raw(batch), sizes, *batch.shape[-2:])
