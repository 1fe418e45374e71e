"""Mask R-CNN (He et al., ICCV 2017): Faster R-CNN plus a branch that finds which pixels of each
detected box belong to the object.

The box part is :class:`~visiontasks.heads.faster_rcnn.FasterRCNN` unchanged (any backbone, FPN or
single level). The mask branch is torchvision's: RoI Align of every positive RoI to 14 x 14
(``MultiScaleRoIAlign``), four 3 x 3 convolutions of 256 channels (``MaskRCNNHeads``), a 2x
transposed convolution and one 28 x 28 mask per class (``MaskRCNNPredictor``); the loss is
torchvision's ``maskrcnn_loss`` (per-pixel binary cross-entropy on the ground-truth class's mask
only, targets RoI-aligned from the full-image masks), inference is ``maskrcnn_inference`` (the
sigmoid of the predicted class's mask). The 28 x 28 masks leave the detector as ``roi_masks`` and
are pasted into the file's pixels (or the image as given) by :func:`visiontasks.ops.detections_to_original`.

Targets in training need ``masks`` uint8 ``[K, H, W]`` (one binary mask per box, in the pixels of
the image as given); eval needs none. Eval output adds ``masks`` float ``[D, H, W]`` in [0, 1].
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from typing import Any, Sequence

import torch
from torch import Tensor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import maskrcnn_inference, maskrcnn_loss
from torchvision.ops import MultiScaleRoIAlign

from visiontasks.backbones import Backbone

from .detector import Detections, Losses, register_detector
from .detector_weights import load_torchvision_detector
from .faster_rcnn import FasterRCNN, positive_rois


@register_detector("mask_rcnn")
class MaskRCNN(FasterRCNN):
    """Mask R-CNN: :class:`FasterRCNN` + the mask branch (see the module docstring).

    Args (besides every :class:`FasterRCNN` setting):
        mask_roi_output_size: RoI Align side of the mask branch (the paper: 14).
        mask_layers: channels of the 3 x 3 convolutions (the paper with FPN: four of 256).
        mask_dilation: their dilation.
        mask_predictor_channels: channels of the 2x deconvolution before the per-class 1 x 1 logits.
        weights: torchvision's ``maskrcnn_resnet50_fpn`` weights (``resnet50``, ``fpn: true``): a
            ``MaskRCNN_ResNet50_FPN_Weights`` name such as ``COCO_V1`` (downloaded only when given) or
            a state_dict file of that model; another class count re-initialises the box and mask
            predictors with a warning.
    """

    paper = "Mask R-CNN"
    year = 2017
    needs_masks = True  # training targets must carry ``masks``
    # Faster R-CNN's formats and reason, plus the masks (``roi_masks`` pasted into the image by the export)
    export_support = replace(FasterRCNN.export_support, outputs=("boxes", "scores", "labels", "masks"))

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        mask_roi_output_size: int = 14,
        mask_layers: Sequence[int] = (256, 256, 256, 256),
        mask_dilation: int = 1,
        mask_predictor_channels: int = 256,
        weights: str | None = None,
        **faster_rcnn: Any,
    ) -> None:
        super().__init__(backbone, num_classes, **faster_rcnn)
        channels = self.out_channels
        heads = self.roi_heads  # torchvision's RoIHeads: its mask path is switched on by these three
        heads.mask_roi_pool = MultiScaleRoIAlign(self.feature_names, mask_roi_output_size, 2)
        heads.mask_head = MaskRCNNHeads(channels, tuple(mask_layers), mask_dilation)
        heads.mask_predictor = MaskRCNNPredictor(int(mask_layers[-1]), mask_predictor_channels, num_classes + 1)
        if weights is not None:
            load_torchvision_detector(self, weights, num_classes, kind="mask_rcnn")

    def _mask_logits(self, feats: OrderedDict[str, Tensor], boxes: list[Tensor], sizes: list[tuple[int, int]]) -> Tensor:
        """Per-class mask logits ``[R, C + 1, 28, 28]`` (fp32) of the boxes (xyxy px) of every image."""
        heads = self.roi_heads
        return heads.mask_predictor(heads.mask_head(heads.mask_roi_pool(feats, boxes, sizes))).float()

    def torchvision_target(self, target: dict[str, Any]) -> dict[str, Tensor]:
        if "masks" not in target:
            raise ValueError("mask_rcnn trains on instance masks: the targets have none; read the data with "
                             "masks (data.init_args.masks: true)")
        out = super().torchvision_target(target)
        masks = target["masks"]
        if masks.ndim != 3 or len(masks) != len(out["boxes"]):
            raise ValueError(f"target masks must be [K, H, W] with one mask per box ({len(out['boxes'])}), "
                             f"got {list(masks.shape)}")
        return {**out, "masks": masks}

    def sample_losses(
        self, feats: OrderedDict[str, Tensor], sizes: list[tuple[int, int]], props: list[Tensor],
        matched_idxs: list[Tensor], labels: list[Tensor], targets: list[dict[str, Tensor]],
    ) -> Losses:
        """``loss_mask``: BCE of the positive RoIs' masks of their ground-truth class (as torchvision's
        ``RoIHeads.forward`` selects them)."""
        positive, boxes = positive_rois(props, labels)
        logits = self._mask_logits(feats, boxes, sizes)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            loss = maskrcnn_loss(logits, [b.float() for b in boxes], [t["masks"] for t in targets],
                                 [lab[i] for lab, i in zip(labels, positive)],
                                 [m[i] for m, i in zip(matched_idxs, positive)])
        return {"loss_mask": loss}

    def detect_more(
        self, feats: OrderedDict[str, Tensor], sizes: list[tuple[int, int]], detections: Detections
    ) -> Detections:
        """Adds ``roi_masks`` float ``[D, 28, 28]``: the predicted class's mask probabilities in each box."""
        logits = self._mask_logits(feats, [d["boxes"] for d in detections], sizes)
        probs = maskrcnn_inference(logits, [d["labels"] + 1 for d in detections])  # torchvision: 0 = background
        return [{**d, "roi_masks": p[:, 0]} for d, p in zip(detections, probs)]

