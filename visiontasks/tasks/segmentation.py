"""Semantic segmentation with FCN-32s / FCN-16s / FCN-8s on any registered backbone."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image
from torch import Tensor, nn
from torchvision.utils import draw_segmentation_masks

from visiontasks.backbones import build_backbone, build_classifier
from visiontasks.data.io import read_image
from visiontasks.data.segmentation.masks import save_index_mask, voc_colormap
from visiontasks.heads.fcn import FCN, FCNHead
from visiontasks.metrics.segmentation import SegmentationMetrics, format_iou_table

from .base import BaseTask

PALETTE = voc_colormap(256)  # class colours of mask PNGs and overlays (VOC's; class 0 black)


class SegmentationTask(BaseTask):
    """FCN semantic segmentation (Long, Shelhamer & Darrell).

    Args:
        model: ``fcn32s``, ``fcn16s`` or ``fcn8s`` (skip fusion from the stride-16 / stride-8
            features, chosen from the backbone's ``feature_info``).
        backbone: a name from ``visiontasks.backbones.list_backbones()`` with stride-8/16/32
            outputs (every family except LeNet-5).
        num_classes: ``K``; must equal the datamodule's.
        weights: backbone weights: ``None``, a torchvision name (``IMAGENET1K_V1``) or a file. When
            the architecture's classifier fits fc6/fc7 (VGG with ``fc_channels=4096``,
            ``fc_kernel_size=7``) it is convolutionalised into them, as in the paper.
        in_chans / frozen_stages / norm_eval: passed to ``build_backbone``.
        fc_channels / fc_kernel_size / dropout: the convolutionalised classifier (fc6: ``k x k``,
            fc7: ``1 x 1``; the paper's VGG values 4096 / 7 / 0.5). ``fc_channels: 0`` scores the
            backbone's stride-32 features directly.
        learn_final_upsample: learn the last upsampling too (the paper keeps it bilinear).
        ignore_index: target value excluded from loss and metrics.
        class_weights: optional per-class cross-entropy weights (``K`` floats).
        overlay_alpha: opacity of the class colours in the overlay PNGs written by ``predict``.
        channels_last: run convolutions in the NHWC memory layout (faster on many CPUs and on
            tensor-core GPUs; results are the same).
        optimizer / lr_scheduler: LightningCLI callables (default AdamW, lr 1e-3).

    Batches: ``{"image": [N, C, H, W], "mask": int64 [N, H, W], "id": [paths], "size": [(H, W)]}``.
    Logged per epoch: ``{stage}/loss``, ``{stage}/mIoU`` (macro: classes absent from prediction
    and ground truth do not count), ``{stage}/pixel_acc``, ``{stage}/mean_class_acc`` and
    ``{stage}/IoU_<class>``. ``test`` prints the per-class IoU table and saves it as
    ``test_iou.csv`` in the run folder; ``predict`` writes ``<name>_mask.png`` (class indices,
    same size as the input) and ``<name>_overlay.png`` under ``prediction_dir()``.
    """

    monitor = "val/mIoU"
    monitor_mode = "max"

    def __init__(
        self,
        model: Literal["fcn32s", "fcn16s", "fcn8s"] = "fcn8s",
        backbone: str = "vgg16",
        num_classes: int = 21,
        weights: str | None = None,
        in_chans: int = 3,
        frozen_stages: int = 0,
        norm_eval: bool = False,
        fc_channels: int = 4096,
        fc_kernel_size: int = 7,
        dropout: float = 0.5,
        learn_final_upsample: bool = False,
        ignore_index: int = 255,
        class_weights: list[float] | None = None,
        overlay_alpha: float = 0.5,
        channels_last: bool = False,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(num_classes, optimizer, lr_scheduler)
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        if 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} collides with a class (0..{num_classes - 1})")
        self.ignore_index = ignore_index
        self.in_chans = in_chans
        self.overlay_alpha = overlay_alpha
        body = build_backbone(backbone, weights, in_chans, None, frozen_stages, norm_eval)
        head = FCNHead(
            body.feature_info, num_classes, model, fc_channels, fc_kernel_size, dropout, learn_final_upsample
        )
        if weights is not None and fc_channels > 0:
            clf = build_classifier(backbone, 1000, weights, in_chans)
            linears = [m for m in clf.head.modules() if isinstance(m, nn.Linear)]
            if head.load_classifier(linears):
                rank_zero_info(f"{model}: {backbone}'s classifier convolutionalised into fc6/fc7")
            del clf
        self.model = FCN(body, head)
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if class_weights is not None:
            if len(class_weights) != num_classes:
                raise ValueError(f"class_weights has {len(class_weights)} values for {num_classes} classes")
            weight = torch.tensor(class_weights, dtype=torch.float32)
            if (weight < 0).any():
                raise ValueError("class_weights must be >= 0")
            self.register_buffer("class_weights", weight, persistent=False)
        else:
            self.class_weights = None
        self.metrics = nn.ModuleDict(
            {s: SegmentationMetrics(num_classes, ignore_index=ignore_index) for s in ("val", "test")}
        )

    def setup(self, stage: str) -> None:
        super().setup(stage)
        for metric in self.metrics.values():
            metric.class_names = list(self.class_names)
        dm = getattr(self.trainer, "datamodule", None)
        for attr in ("in_chans", "ignore_index"):
            theirs = getattr(dm, attr, None)
            if theirs is not None and theirs != getattr(self, attr):
                raise ValueError(
                    f"model.{attr}={getattr(self, attr)} but data.{attr}={theirs}; make them agree in the config"
                )

    # -- steps ----------------------------------------------------------------------------------------
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

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        logits = self(batch["image"])
        loss = self.loss(logits, batch["mask"])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(logits))
        return loss

    def _eval_step(self, batch: dict[str, Any], stage: str) -> None:
        logits = self(batch["image"])
        target = batch["mask"]
        self.log(f"{stage}/loss", self.loss(logits, target), sync_dist=True, batch_size=len(logits))
        self.metrics[stage].update(logits.argmax(dim=1), target)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _log_scores(self, stage: str) -> dict[str, Tensor]:
        metric = self.metrics[stage]
        scores = metric.compute()  # the confusion matrix is summed over processes here
        # Reset to normal tensors even under `validate`'s inference mode: fit's validation may run
        # without it and could not update inference tensors in place.
        with torch.inference_mode(False):
            metric.reset()
        # The values are already global (from the summed matrix), identical on every rank, so
        # averaging them over ranks (sync_dist) changes nothing; it only tells Lightning so.
        for key in ("mIoU", "pixel_acc", "mean_class_acc"):
            self.log(f"{stage}/{key}", scores[key], prog_bar=key == "mIoU", sync_dist=True)
        for name, iou in zip(self.class_names, scores["iou"]):
            self.log(f"{stage}/IoU_{str(name).replace(' ', '_')}", iou, sync_dist=True)
        return scores

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val")

    def on_test_epoch_end(self) -> None:
        scores = self._log_scores("test")
        self.test_scores = scores
        if self.trainer.is_global_zero:
            table = format_iou_table(self.class_names, scores)
            print(f"\nPer-class IoU (test, {self.hparams.model} on {self.hparams.backbone}):\n{table}\n")
            path = self.run_dir() / "test_iou.csv"
            with path.open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["class", "iou", "accuracy", "pixels"])
                gt = scores["confmat"].sum(dim=1).tolist()
                for row in zip(self.class_names, scores["iou"].tolist(), scores["class_acc"].tolist(), gt):
                    w.writerow(row)
                w.writerow(["mean", float(scores["mIoU"]), float(scores["mean_class_acc"]), sum(gt)])

    # -- predict ----------------------------------------------------------------------------------------
    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        """Write ``<name>_mask.png`` (class indices, input size) and ``<name>_overlay.png``."""
        preds = self(batch["image"]).argmax(dim=1)
        out_dir = self.prediction_dir()
        written = []
        for pred, (h, w), path in zip(preds, batch["size"], batch["id"]):
            written.append(self._write_prediction(pred[:h, :w], Path(path), out_dir))
        return written

    def _write_prediction(self, pred: Tensor, path: Path, out_dir: Path) -> dict[str, Any]:
        image = read_image(path, 3)  # the original pixels, for the overlay
        if tuple(pred.shape) != image.shape[:2]:  # an eval transform that resized: back to the input size
            pred = F.interpolate(pred[None, None].float(), size=image.shape[:2], mode="nearest")[0, 0].long()
        mask = pred.cpu().numpy()
        mask_path = out_dir / f"{path.stem}_mask.png"
        overlay_path = out_dir / f"{path.stem}_overlay.png"
        palette = PALETTE
        if self.num_classes <= 256:
            save_index_mask(mask_path, mask.astype(np.uint8), palette)
        else:  # more classes than a palette PNG holds: 16-bit greyscale ids
            Image.fromarray(mask.astype(np.uint16)).save(mask_path)
        shown = [k for k in np.unique(mask).tolist() if not (k == 0 and _is_background(self.class_names[0]))]
        img_t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if shown:
            masks = torch.stack([torch.from_numpy(mask == k) for k in shown])
            colours = [tuple(int(c) for c in palette[k % len(palette)]) for k in shown]
            img_t = draw_segmentation_masks(img_t, masks, alpha=self.overlay_alpha, colors=colours)
        Image.fromarray(img_t.permute(1, 2, 0).numpy()).save(overlay_path)
        classes = {self.class_names[k]: int((mask == k).sum()) for k in np.unique(mask).tolist()}
        return {"id": str(path), "mask": str(mask_path), "overlay": str(overlay_path), "pixels": classes}


def _is_background(name: str) -> bool:
    return name.lower() in ("background", "bg", "unlabeled", "unlabelled", "void")

