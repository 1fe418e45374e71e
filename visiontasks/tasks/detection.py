"""Object detection: R-CNN, Fast R-CNN, Faster R-CNN and YOLOv1 behind one task, one metric."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from PIL import Image
from torch import Tensor
from torchmetrics.detection import MeanAveragePrecision
from torchvision.utils import draw_bounding_boxes

from visiontasks.backbones import build_backbone
from visiontasks.data.io import read_image
from visiontasks.heads.detector import build_detector
from visiontasks.ops import boxes_to_original

from .base import BaseTask

Batch = tuple[list[Tensor], list[dict[str, Any]]]


def make_map_metric(class_metrics: bool = True) -> MeanAveragePrecision:
    """COCO mAP over boxes (xyxy), computed by faster_coco_eval; per-class AP when asked.

    The IoU and recall thresholds are COCOeval's own float64 values: torchmetrics' defaults come from
    a float32 ``linspace`` (0.30000001 instead of 0.3), which moves recall steps such as 3/10 to the
    other side of a threshold and changes AP in the third decimal.
    """
    iou_thresholds = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1).tolist()
    rec_thresholds = np.linspace(0.0, 1.0, int(np.round(1.0 / 0.01)) + 1).tolist()
    return MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="faster_coco_eval",
                                class_metrics=class_metrics, iou_thresholds=iou_thresholds,
                                rec_thresholds=rec_thresholds)


def map_results_to_log(results: dict[str, Tensor], class_names: list[str], prefix: str) -> dict[str, float]:
    """``{prefix}/mAP`` (@[.5:.95]), ``mAP50``, ``mAP75``, ``mAR100`` and ``{prefix}/AP/<class>``
    (only classes with ground truth or detections; COCO's -1 "no data" entries are left out)."""
    out = {
        f"{prefix}/mAP": float(results["map"]),
        f"{prefix}/mAP50": float(results["map_50"]),
        f"{prefix}/mAP75": float(results["map_75"]),
        f"{prefix}/mAR100": float(results["mar_100"]),
    }
    per_class = results.get("map_per_class")
    classes = results.get("classes")
    if per_class is not None and classes is not None:
        for c, ap in zip(classes.reshape(-1).tolist(), per_class.reshape(-1).tolist()):
            if ap >= 0 and 0 <= c < len(class_names):
                out[f"{prefix}/AP/{class_names[c]}"] = float(ap)
    return out


def _palette(n: int) -> list[tuple[int, int, int]]:
    import colorsys

    return [tuple(int(255 * v) for v in colorsys.hsv_to_rgb(i / max(n, 1), 0.85, 1.0)) for i in range(n)]


class DetectionTask(BaseTask):
    """Train and evaluate a detector built from the registry on a registered backbone.

    Args:
        model: ``faster_rcnn``, ``yolov1``, ``rcnn`` or ``fast_rcnn`` (see
            ``visiontasks.heads.detector.list_detectors()``).
        backbone: a name from ``visiontasks.backbones.list_backbones()``.
        num_classes: real classes (no background); must equal the datamodule's.
        backbone_weights: ``None``, a torchvision weights name (downloads only when given) or a file.
        in_chans, frozen_stages, norm_eval: passed to ``build_backbone``.
        model_kwargs: detector settings (e.g. ``{fpn: true}`` for Faster R-CNN, ``{grid_size: 7}``
            for YOLOv1); see each detector's docstring.
        draw_score_thresh: detections drawn in the predict PNGs score at least this (the JSON keeps
            all of them).
        optimizer / lr_scheduler: from the config (LightningCLI callables).

    Batches are ``(list of images [3, H, W] normalised, list of targets)``: see
    ``visiontasks.data.detection``. Logged once per epoch (the metric is updated per batch):
    ``{val,test}/mAP`` (@IoU .5:.95), ``mAP50``, ``mAP75``, ``mAR100`` and ``{val,test}/AP/<class>``,
    all in the pixels of the image files (predictions are mapped back through the resize).
    ``predict`` writes ``predictions/results.json`` (COCO results: image_id, category_id,
    bbox [x, y, w, h] in file pixels, score) and one PNG per image with the boxes drawn.
    """

    monitor = "val/mAP"
    monitor_mode = "max"

    def __init__(
        self,
        model: str = "faster_rcnn",
        backbone: str = "resnet18",
        num_classes: int = 3,
        backbone_weights: str | None = None,
        in_chans: int = 3,
        frozen_stages: int = 0,
        norm_eval: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        draw_score_thresh: float = 0.3,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(num_classes, optimizer, lr_scheduler)
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        body = build_backbone(backbone, backbone_weights, in_chans, frozen_stages=frozen_stages,
                              norm_eval=norm_eval)
        self.detector = build_detector(model, body, num_classes, **(model_kwargs or {}))
        self.draw_score_thresh = draw_score_thresh
        self.category_ids: list[int] = list(range(num_classes))
        self.val_map = make_map_metric()
        self.test_map = make_map_metric()
        self._results: list[dict[str, Any]] = []

    def setup(self, stage: str) -> None:
        super().setup(stage)
        dm = getattr(self.trainer, "datamodule", None) if self._trainer else None
        ids = getattr(dm, "category_ids", None)
        if ids and len(ids) == self.num_classes:
            self.category_ids = [int(i) for i in ids]

    # -- model ------------------------------------------------------------------------------------
    def forward(self, images: list[Tensor], proposals: list[Tensor] | None = None) -> list[dict[str, Tensor]]:
        """Detections per image (the detector must be in eval mode)."""
        return self.detector(images, None, proposals)

    def _proposals(self, targets: list[dict[str, Any]]) -> list[Tensor] | None:
        if not self.detector.needs_proposals:
            return None
        if any("proposals" not in t for t in targets):
            raise ValueError(
                f"model {self.hparams.model!r} needs region proposals, but the batch has none: set "
                "data.init_args.proposals (e.g. {mode: fast}) so the datamodule computes and caches them"
            )
        return [t["proposals"] for t in targets]

    # -- steps ------------------------------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        images, targets = batch
        losses = self.detector(images, targets, self._proposals(targets))
        loss = sum(losses.values())
        n = len(images)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=n)
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, on_step=False,
                      on_epoch=True, batch_size=n)
        return loss

    def _detect_original(self, batch: Batch) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
        """Detections and ground truth of a batch, both in the pixels of the image files."""
        images, targets = batch
        preds = self.detector(images, None, self._proposals(targets))
        preds_o, gts_o = [], []
        for p, t in zip(preds, targets):
            boxes, gt = p["boxes"].float(), t["boxes"].float()
            if "image_box" in t and "orig_size" in t:
                boxes = boxes_to_original(boxes, t["image_box"], t["orig_size"])
                gt = boxes_to_original(gt, t["image_box"], t["orig_size"])
            preds_o.append({"boxes": boxes, "scores": p["scores"].float(), "labels": p["labels"]})
            gts_o.append({"boxes": gt, "labels": t["labels"]})
        return preds_o, gts_o

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        preds, gts = self._detect_original(batch)
        self.val_map.update(preds, gts)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        preds, gts = self._detect_original(batch)
        self.test_map.update(preds, gts)

    def _log_map(self, metric: MeanAveragePrecision, prefix: str) -> None:
        results = metric.compute()
        metric.reset()
        values = map_results_to_log(results, self.class_names, prefix)
        # identical on every process (the metric syncs its states); sync_dist only quiets Lightning
        self.log(f"{prefix}/mAP", values.pop(f"{prefix}/mAP"), prog_bar=True, sync_dist=True)
        self.log_dict(values, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self._log_map(self.val_map, "val")

    def on_test_epoch_end(self) -> None:
        self._log_map(self.test_map, "test")

    # -- predict ----------------------------------------------------------------------------------
    def on_predict_epoch_start(self) -> None:
        self._results = []

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        """Per image ``{image_id, path, boxes, scores, labels}`` in file pixels; also writes a PNG
        per image (boxes with class names and scores drawn) and collects COCO result entries."""
        _, targets = batch
        preds, _ = self._detect_original(batch)
        out_dir = self.prediction_dir()
        colours = _palette(self.num_classes)
        outputs = []
        for p, t in zip(preds, targets):
            boxes, scores, labels = p["boxes"].cpu(), p["scores"].cpu(), p["labels"].cpu()
            image_id, path = int(t["image_id"]), str(t["path"])
            for b, s, c in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
                self._results.append({
                    "image_id": image_id, "category_id": self.category_ids[c],
                    "bbox": [round(b[0], 2), round(b[1], 2), round(b[2] - b[0], 2), round(b[3] - b[1], 2)],
                    "score": round(float(s), 5),
                })
            image = torch.from_numpy(read_image(path).copy()).permute(2, 0, 1).contiguous()
            shown = scores >= self.draw_score_thresh
            if shown.any():
                names = [f"{self.class_names[c]} {s:.2f}" for c, s in zip(labels[shown].tolist(), scores[shown].tolist())]
                width = max(1, round(min(image.shape[-2:]) / 200))
                image = draw_bounding_boxes(image, boxes[shown], labels=names,
                                            colors=[colours[c] for c in labels[shown].tolist()], width=width)
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(out_dir / f"{image_id:06d}_{Path(path).stem}.png")
            outputs.append({"image_id": image_id, "path": path, "boxes": boxes, "scores": scores, "labels": labels})
        return outputs

    def on_predict_epoch_end(self) -> None:
        results = self._results
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, results)
            results = []
            seen: set[int] = set()
            for part in gathered:  # the distributed sampler repeats images to even out ranks
                ids = {r["image_id"] for r in part} - seen
                results += [r for r in part if r["image_id"] in ids]
                seen |= ids
        if self.trainer.is_global_zero:
            path = self.prediction_dir() / "results.json"
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(results))
            tmp.replace(path)
        self._results = []

