"""Object detection: R-CNN, Fast R-CNN, Faster R-CNN and YOLOv1 behind one task, one metric."""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torchmetrics.detection import MeanAveragePrecision

from visiontasks.backbones import build_backbone
from visiontasks.errors import InvalidInputError
from visiontasks.heads.detector import build_detector
from visiontasks.metrics.detection import make_map_metric, map_results_to_log
from visiontasks.ops import boxes_to_original

from .base import BaseTask

Batch = tuple[list[Tensor], list[dict[str, Any]]]


class DetectionTask(BaseTask):
    """Train and evaluate a detector built from the registry on a registered backbone.

    Args:
        model: ``faster_rcnn``, ``yolov1``, ``rcnn`` or ``fast_rcnn`` (see
            ``visiontasks.heads.detector.list_detectors()``).
        backbone: a name from ``visiontasks.backbones.list_backbones()``.
        num_classes: real classes (no background); must equal the datamodule's.
        backbone_weights: ``None``, a torchvision weights name (downloads only when given), a
            state_dict file, or a visiontasks checkpoint of any task (its backbone is taken).
        in_chans, frozen_stages, norm_eval: passed to ``build_backbone``.
        model_kwargs: detector settings (e.g. ``{fpn: true}`` for Faster R-CNN, ``{grid_size: 7}``
            for YOLOv1); see each detector's docstring.
        optimizer / lr_scheduler: from the config (LightningCLI callables).

    ``model``, ``backbone`` and ``num_classes`` may be given by position, the rest by keyword; the
    settings every task shares (``backbone_weights``, ``in_chans``, ``frozen_stages``, ``optimizer``,
    ``lr_scheduler``) are :class:`BaseTask`'s, passed on as ``**kwargs``.

    Batches are ``(list of images [3, H, W] normalised, list of targets)``: see
    ``visiontasks.data.detection``. Logged once per epoch (the metric is updated per batch):
    ``{val,test}/mAP`` (@IoU .5:.95), ``mAP50``, ``mAP75``, ``mAR100`` and ``{val,test}/AP/<class>``,
    all in the pixels of the image files (predictions are mapped back through the resize).
    ``predict_step`` returns per image ``{image_id, path, boxes, scores, labels}`` in file pixels;
    ``visiontasks.outputs`` writes them as COCO results and drawn PNGs.
    """

    monitor = "val/mAP"
    monitor_mode = "max"
    family = "detection"
    result_type = "visiontasks.results.DetectionResult"
    prediction_data = "visiontasks.data.detection.dataset"
    output_callbacks = "visiontasks.outputs.detection.task_callbacks"
    export_wrapper = "visiontasks.export.wrappers.DetectorExport"

    def __init__(
        self,
        model: str = "faster_rcnn",
        backbone: str = "resnet18",
        num_classes: int = 3,
        *,
        norm_eval: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, backbone=backbone, **kwargs)
        self.category_ids: list[int] | None = None  # the dataset's id of each class (COCO's), for results files

    def build_model(self) -> None:
        h = self.hparams
        body = build_backbone(h.backbone, h.backbone_weights, h.in_chans, frozen_stages=h.frozen_stages,
                              norm_eval=h.norm_eval)
        self.detector = build_detector(h.model, body, self.num_classes, **(h.model_kwargs or {}))

    def build_metrics(self) -> MeanAveragePrecision:
        return make_map_metric()

    def setup(self, stage: str) -> None:
        super().setup(stage)
        ids = getattr(getattr(self.trainer, "datamodule", None), "category_ids", None) if self._trainer else None
        if ids is not None and len(ids) == self.num_classes:
            self.category_ids = [int(i) for i in ids]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["category_ids"] = self.category_ids

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.category_ids = checkpoint.get("category_ids", self.category_ids)

    # -- model ------------------------------------------------------------------------------------
    def forward(self, images: list[Tensor], proposals: list[Tensor] | None = None) -> list[dict[str, Tensor]]:
        """Detections per image (the detector must be in eval mode)."""
        return self.detector(images, None, proposals)

    def _proposals(self, targets: list[dict[str, Any]]) -> list[Tensor] | None:
        if not self.detector.needs_proposals:
            return None
        if any("proposals" not in t for t in targets):
            raise InvalidInputError(
                f"model {self.hparams.model!r} needs region proposals, but the batch has none: set "
                "data.init_args.proposals (e.g. {mode: fast}) so the datamodule computes and caches them"
            )
        return [t["proposals"] for t in targets]

    def _detect_original(self, batch: Batch) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
        """Detections and ground truth of a batch, both in the pixels of the image files (the
        detector maps its output with the targets' geometry; the ground truth is mapped here)."""
        images, targets = batch
        preds = self.detector(images, targets, self._proposals(targets))
        preds_o, gts_o = [], []
        for p, t in zip(preds, targets):
            gt = t["boxes"].float()
            if "image_box" in t and "orig_size" in t:
                gt = boxes_to_original(gt, t["image_box"], t["orig_size"])
            preds_o.append({"boxes": p["boxes"].float(), "scores": p["scores"].float(), "labels": p["labels"]})
            gts_o.append({"boxes": gt, "labels": t["labels"]})
        return preds_o, gts_o

    # -- what differs from the template -----------------------------------------------------------
    def training_loss(self, batch: Batch) -> Tensor:
        images, targets = batch
        losses = self.detector(images, targets, self._proposals(targets))
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, on_step=False,
                      on_epoch=True, batch_size=len(images))
        return sum(losses.values())

    def update_metrics(self, metrics: MeanAveragePrecision, batch: Batch) -> None:
        metrics.update(*self._detect_original(batch))

    def results_to_log(self, results: dict[str, Tensor], stage: str) -> dict[str, float]:
        return map_results_to_log(results, self.class_names, stage)

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        """Per image ``{image_id: int, path: str, boxes: float [K, 4] xyxy in file pixels,
        scores: [K], labels: int64 [K] (0-based class indices)}``, on the CPU."""
        _, targets = batch
        preds, _ = self._detect_original(batch)
        return [
            {"image_id": int(t["image_id"]), "path": str(t["path"]), "boxes": p["boxes"].cpu(),
             "scores": p["scores"].cpu(), "labels": p["labels"].cpu()}
            for p, t in zip(preds, targets)
        ]
