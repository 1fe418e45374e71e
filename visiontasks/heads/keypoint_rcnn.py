"""Keypoint R-CNN (He et al., ICCV 2017, section 5): Faster R-CNN plus a branch that finds each
detected object's keypoints (a person's joints: its pose).

The box part is :class:`~visiontasks.heads.faster_rcnn.FasterRCNN` unchanged (any backbone, FPN or
single level). The keypoint branch is torchvision's: RoI Align of every positive RoI to 14 x 14
(``MultiScaleRoIAlign``), eight 3 x 3 convolutions of 512 channels (``KeypointRCNNHeads``), a 2x
transposed convolution to one heatmap per keypoint and a 2x bilinear upsampling to 56 x 56
(``KeypointRCNNPredictor``). The loss is torchvision's ``keypointrcnn_loss``: per keypoint, a
softmax cross-entropy over the 56 x 56 cells against the cell of the ground-truth keypoint (the
paper's one-hot mask), for keypoints with v > 0 inside their RoI only. Inference is
``keypointrcnn_inference``: each heatmap resized (bicubic) to its box, the arg-max is the keypoint.

Targets in training need ``keypoints`` float ``[K, P, 3]`` (x, y in the pixels of the image as given,
COCO visibility v; v = 0 carries no loss). Eval output adds ``keypoints`` float ``[D, P, 3]``: x, y
in the same pixels as the boxes (file pixels when mapped by :func:`visiontasks.ops.detections_to_original`)
and, third, torchvision's keypoint score: the heatmap's logit at the chosen cell, unbounded (not a
probability, not a visibility; higher is surer), the ``keypoints_scores`` torchvision returns beside
its keypoints (whose own third column is always 1).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from typing import Any, Sequence

import torch
from torch import Tensor
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
from torchvision.models.detection.roi_heads import keypointrcnn_inference, keypointrcnn_loss
from torchvision.ops import MultiScaleRoIAlign

from visiontasks.backbones import Backbone
from visiontasks.errors import InvalidInputError

from .detector import Detections, Losses, register_detector
from .detector_weights import load_torchvision_detector
from .faster_rcnn import FasterRCNN, positive_rois


@register_detector("keypoint_rcnn")
class KeypointRCNN(FasterRCNN):
    """Keypoint R-CNN: :class:`FasterRCNN` + the keypoint branch (see the module docstring).

    Args (besides every :class:`FasterRCNN` setting):
        num_keypoints: keypoints per object (COCO person: 17); must equal the data's.
        keypoint_roi_output_size: RoI Align side of the keypoint branch (the paper: 14).
        keypoint_layers: channels of the 3 x 3 convolutions (the paper: eight of 512).
        weights: torchvision's ``keypointrcnn_resnet50_fpn`` weights (``resnet50``, ``fpn: true``): a
            ``KeypointRCNN_ResNet50_FPN_Weights`` name such as ``COCO_V1`` (downloaded only when given;
            one class, person, and 17 keypoints) or a state_dict file of that model; another class
            count re-initialises the box predictor, another keypoint count the keypoint predictor's
            last layer, each with a warning.
    """

    paper = "Mask R-CNN (Keypoint R-CNN, section 5)"
    year = 2017
    needs_keypoints = True  # training targets must carry ``keypoints``
    # Faster R-CNN's formats and reason, plus the keypoints (already in the image's pixels from ``detect``)
    export_support = replace(FasterRCNN.export_support, outputs=("boxes", "scores", "labels", "keypoints"))

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        num_keypoints: int = 17,
        keypoint_roi_output_size: int = 14,
        keypoint_layers: Sequence[int] = (512,) * 8,
        weights: str | None = None,
        **faster_rcnn: Any,
    ) -> None:
        super().__init__(backbone, num_classes, **faster_rcnn)
        if num_keypoints < 1:
            raise InvalidInputError(f"num_keypoints must be >= 1, got {num_keypoints}")
        self.num_keypoints = int(num_keypoints)
        heads = self.roi_heads  # torchvision's RoIHeads: its keypoint path is switched on by these three
        heads.keypoint_roi_pool = MultiScaleRoIAlign(self.feature_names, keypoint_roi_output_size, 2)
        heads.keypoint_head = KeypointRCNNHeads(self.out_channels, tuple(int(c) for c in keypoint_layers))
        heads.keypoint_predictor = KeypointRCNNPredictor(int(keypoint_layers[-1]), self.num_keypoints)
        if weights is not None:
            load_torchvision_detector(self, weights, num_classes, kind="keypoint_rcnn")

    def _keypoint_logits(self, feats: OrderedDict[str, Tensor], boxes: list[Tensor],
                         sizes: list[tuple[int, int]]) -> Tensor:
        """Heatmap logits ``[R, P, 56, 56]`` (fp32) of the boxes (xyxy px) of every image."""
        heads = self.roi_heads
        return heads.keypoint_predictor(heads.keypoint_head(heads.keypoint_roi_pool(feats, boxes, sizes))).float()

    def torchvision_target(self, target: dict[str, Any]) -> dict[str, Tensor]:
        if "keypoints" not in target:
            raise ValueError("keypoint_rcnn trains on keypoints: the targets have none; read the data with "
                             "keypoints (data.init_args.keypoints: true)")
        out = super().torchvision_target(target)
        kp = target["keypoints"]
        if kp.ndim != 3 or kp.shape[1:] != (self.num_keypoints, 3) or len(kp) != len(out["boxes"]):
            raise ValueError(f"target keypoints must be [K, {self.num_keypoints}, 3] with one row per box "
                             f"({len(out['boxes'])}), got {list(kp.shape)}")
        return {**out, "keypoints": kp.float()}

    def sample_losses(
        self, feats: OrderedDict[str, Tensor], sizes: list[tuple[int, int]], props: list[Tensor],
        matched_idxs: list[Tensor], labels: list[Tensor], targets: list[dict[str, Tensor]],
    ) -> Losses:
        """``loss_keypoint``: the heatmap cross-entropy of the positive RoIs (as torchvision's
        ``RoIHeads.forward`` selects them)."""
        positive, boxes = positive_rois(props, labels)
        logits = self._keypoint_logits(feats, boxes, sizes)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            loss = keypointrcnn_loss(logits, [b.float() for b in boxes], [t["keypoints"] for t in targets],
                                     [m[i] for m, i in zip(matched_idxs, positive)])
        return {"loss_keypoint": loss}

    def detect_more(
        self, feats: OrderedDict[str, Tensor], sizes: list[tuple[int, int]], detections: Detections
    ) -> Detections:
        """Adds ``keypoints`` float ``[D, P, 3]``: x, y in the image's pixels and the keypoint score."""
        boxes = [d["boxes"] for d in detections]
        logits = self._keypoint_logits(feats, boxes, sizes)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            points, scores = keypointrcnn_inference(logits, [b.float() for b in boxes])
        return [{**d, "keypoints": torch.cat([p[..., :2], s[..., None]], -1).float()}
                for d, p, s in zip(detections, points, scores)]

