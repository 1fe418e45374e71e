"""Semantic segmentation with FCN-32s / FCN-16s / FCN-8s on any registered backbone."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from visiontasks.backbones import build_backbone, build_classifier
from visiontasks.errors import InvalidInputError
from visiontasks.heads.fcn import FCN, FCNHead
from visiontasks.metrics.segmentation import SegmentationMetrics
from visiontasks.ops import mask_to_original

from .base import BaseTask


class SegmentationTask(BaseTask):
    """FCN semantic segmentation (Long, Shelhamer & Darrell).

    Args:
        model: ``fcn32s``, ``fcn16s`` or ``fcn8s`` (skip fusion from the stride-16 / stride-8
            features, chosen from the backbone's ``feature_info``).
        backbone: a name from ``visiontasks.backbones.list_backbones()`` with stride-8/16/32
            outputs (every family except LeNet-5).
        num_classes: ``K``; must equal the datamodule's.
        backbone_weights: ``None``, a torchvision name (``IMAGENET1K_V1``), a state_dict file or a
            visiontasks checkpoint of any task. When the
            architecture's classifier fits fc6/fc7 (VGG with ``fc_channels=4096``,
            ``fc_kernel_size=7``) it is convolutionalised into them, as in the paper.
        in_chans / frozen_stages / norm_eval: passed to ``build_backbone``.
        fc_channels / fc_kernel_size / dropout: the convolutionalised classifier (fc6: ``k x k``,
            fc7: ``1 x 1``; the paper's VGG values 4096 / 7 / 0.5). ``fc_channels: 0`` scores the
            backbone's stride-32 features directly.
        learn_final_upsample: learn the last upsampling too (the paper keeps it bilinear).
        ignore_index: target value excluded from loss and metrics.
        class_weights: optional per-class cross-entropy weights (``K`` floats).
        channels_last: run convolutions in the NHWC memory layout (faster on many CPUs and on
            tensor-core GPUs; results are the same).
        optimizer / lr_scheduler: LightningCLI callables (default AdamW, lr 1e-3).

    ``model``, ``backbone`` and ``num_classes`` may be given by position, the rest by keyword; the
    settings every task shares (``backbone_weights``, ``in_chans``, ``frozen_stages``, ``optimizer``,
    ``lr_scheduler``) are :class:`BaseTask`'s, passed on as ``**kwargs``.

    Batches: ``{"image": [N, C, H, W], "mask": int64 [N, H, W], "id": [paths], "size": [(H, W)],
    "orig_size": [(H0, W0)] (optional)}``. Logged per epoch: ``{stage}/loss``, ``{stage}/mIoU``
    (macro: classes absent from prediction and ground truth do not count), ``{stage}/pixel_acc``,
    ``{stage}/mean_class_acc`` and ``{stage}/IoU_<class>``. ``predict_step`` returns the class-index
    mask of each image at its original size; ``visiontasks.outputs`` writes the mask and overlay
    PNGs and the per-class IoU table of ``test``.
    """

    monitor = "val/mIoU"
    monitor_mode = "max"
    checked_with_data = ("in_chans", "ignore_index")
    family = "segmentation"
    result_type = "visiontasks.results.SegmentationResult"
    prediction_data = "visiontasks.data.segmentation.dataset"
    output_callbacks = "visiontasks.outputs.segmentation.task_callbacks"
    export_wrapper = "visiontasks.export.wrappers.SegmenterExport"

    def __init__(
        self,
        model: Literal["fcn32s", "fcn16s", "fcn8s"] = "fcn8s",
        backbone: str = "vgg16",
        num_classes: int = 21,
        *,
        norm_eval: bool = False,
        fc_channels: int = 4096,
        fc_kernel_size: int = 7,
        dropout: float = 0.5,
        learn_final_upsample: bool = False,
        ignore_index: int = 255,
        class_weights: list[float] | None = None,
        channels_last: bool = False,
        **kwargs: Any,
    ) -> None:
        if 0 <= ignore_index < num_classes:
            raise InvalidInputError(f"ignore_index {ignore_index} collides with a class (0..{num_classes - 1})")
        if class_weights is not None and len(class_weights) != num_classes:
            raise InvalidInputError(f"class_weights has {len(class_weights)} values for {num_classes} classes")
        if class_weights is not None and min(class_weights) < 0:
            raise InvalidInputError("class_weights must be >= 0")
        super().__init__(num_classes, backbone=backbone, **kwargs)
        self.ignore_index = ignore_index
        self.channels_last = channels_last
        weight = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", weight, persistent=False)

    def build_model(self) -> None:
        h = self.hparams
        body = build_backbone(h.backbone, h.backbone_weights, h.in_chans, None, h.frozen_stages, h.norm_eval)
        head = FCNHead(body.feature_info, self.num_classes, h.model, h.fc_channels, h.fc_kernel_size,
                       h.dropout, h.learn_final_upsample)
        if h.backbone_weights is not None and h.fc_channels > 0:
            clf = build_classifier(h.backbone, 1000, h.backbone_weights, h.in_chans)
            linears = [m for m in clf.head.modules() if isinstance(m, nn.Linear)]
            if head.load_classifier(linears):
                rank_zero_info(f"{h.model}: {h.backbone}'s classifier convolutionalised into fc6/fc7")
            del clf
        self.model = FCN(body, head)
        if h.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def build_metrics(self) -> SegmentationMetrics:
        return SegmentationMetrics(self.num_classes, ignore_index=self.hparams.ignore_index)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        for metric in self.metrics.values():
            metric.class_names = list(self.class_names)

    def forward(self, x: Tensor) -> Tensor:
        """``[N, C, H, W] -> logits [N, K, H, W]`` (same ``H, W`` as the input, any size)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """Pixel cross-entropy in fp32 (also under AMP), ignoring ``ignore_index``; zero (with a
        graph) for a batch with no labelled pixel, where the mean would be NaN."""
        if not (target != self.ignore_index).any():
            return logits.sum() * 0.0
        return F.cross_entropy(logits.float(), target, weight=self.class_weights, ignore_index=self.ignore_index)

    def training_loss(self, batch: dict[str, Any]) -> Tensor:
        return self.loss(self(batch["image"]), batch["mask"])

    def update_metrics(self, metrics: SegmentationMetrics, batch: dict[str, Any]) -> Tensor:
        logits = self(batch["image"])
        metrics.update(logits.argmax(dim=1), batch["mask"])
        return self.loss(logits, batch["mask"])

    def results_to_log(self, results: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        # the scores come from the confusion matrix summed over processes: global on every rank
        values = {f"{stage}/{key}": results[key] for key in ("mIoU", "pixel_acc", "mean_class_acc")}
        for name, iou in zip(self.class_names, results["iou"]):
            values[f"{stage}/IoU_{str(name).replace(' ', '_')}"] = iou
        return values

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        """Per image ``{"id": path, "mask": int64 [H0, W0]}``: class indices at the size of the
        image file when the batch carries ``orig_size`` (else at the model input's size)."""
        preds = self(batch["image"]).argmax(dim=1)
        orig_sizes = batch.get("orig_size")
        if orig_sizes is None:
            orig_sizes = [None] * len(preds)
        return [
            {"id": str(path), "mask": mask_to_original(pred, size, orig)}
            for pred, size, orig, path in zip(preds, batch["size"], orig_sizes, batch["id"])
        ]
