"""Instance segmentation: a detector that also returns each object's pixels (Mask R-CNN).

A :class:`DetectionTask` in everything but what it measures and returns: box AP and mask AP (COCO's
``segm``), and per-image masks next to the boxes. It is its own class (rather than
``DetectionTask(model: mask_rcnn)``) because those two differences are the task's: its metric, the
value checkpoints are chosen by (``val/mask_mAP``) and its output files (masks in the COCO results,
masks drawn) follow the class, as the output callbacks are chosen by task type.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torchmetrics.detection import MeanAveragePrecision

from visiontasks.metrics.detection import make_map_metric, map_results_to_log
from visiontasks.ops import boxes_to_original, instance_masks_to_original

from .detection import Batch, DetectionTask


class InstanceSegmentationTask(DetectionTask):
    """Train and evaluate an instance-segmentation detector (``model: mask_rcnn``) on a registered
    backbone; the data must be read with ``masks: true`` (targets carry ``masks`` uint8 ``[K, H, W]``).

    Args: as :class:`DetectionTask` (``norm_eval``, ``model_kwargs`` and :class:`BaseTask`'s shared
    settings pass on as ``**kwargs``; ``backbone_weights``, ``in_chans``, ``frozen_stages``,
    ``optimizer``, ``lr_scheduler``), with ``model: mask_rcnn``; ``mask_thresh`` turns mask
    probabilities into pixels (0.5, as Mask R-CNN's paper and torchvision).

    Logged per evaluation epoch, all in the pixels of the image files: box AP as the detection task
    (``{val,test}/mAP``, ``mAP50``, ``mAP75``, ``mAR100``, ``AP/<class>``) and mask AP under
    ``mask_`` (``{val,test}/mask_mAP``, ``mask_mAP50``, ..., ``mask_AP/<class>``).
    ``predict_step`` adds per image ``segmentation``: one COCO RLE (``{size: [H0, W0], counts: str}``)
    per detection, the mask in file pixels (compact: a list of them for a whole split fits in memory).
    """

    monitor = "val/mask_mAP"

    def __init__(self, model: str = "mask_rcnn", backbone: str = "resnet18", num_classes: int = 3, *,
                 mask_thresh: float = 0.5, **kwargs: Any) -> None:
        super().__init__(model, backbone, num_classes, **kwargs)

    def build_model(self) -> None:
        super().build_model()
        if not self.detector.needs_masks:
            raise ValueError(f"model {self.hparams.model!r} returns no masks; instance segmentation needs "
                             "model: mask_rcnn (for boxes only use DetectionTask)")

    def build_metrics(self) -> MeanAveragePrecision:
        return make_map_metric(iou_type=("bbox", "segm"))

    def _detect_original(self, batch: Batch) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
        """Detections (with bool ``masks`` [D, H0, W0]) and ground truth (boxes, bool masks), both in
        the pixels of the image files."""
        images, targets = batch
        preds = self.detector(images, targets, self._proposals(targets))
        preds_o, gts_o = [], []
        for p, t in zip(preds, targets):
            if "masks" not in t:
                raise ValueError("instance segmentation is evaluated on masks: set data.init_args.masks: true")
            boxes, masks = t["boxes"].float(), t["masks"]
            if "image_box" in t and "orig_size" in t:
                boxes = boxes_to_original(boxes, t["image_box"], t["orig_size"])
                masks = instance_masks_to_original(masks, t["image_box"], t["orig_size"])
            preds_o.append({"boxes": p["boxes"].float(), "scores": p["scores"].float(), "labels": p["labels"],
                            "masks": p["masks"] >= self.hparams.mask_thresh})
            gts_o.append({"boxes": boxes, "labels": t["labels"], "masks": masks.bool()})
        return preds_o, gts_o

    def results_to_log(self, results: dict[str, Tensor], stage: str) -> dict[str, float]:
        return {**map_results_to_log(results, self.class_names, stage, "bbox"),
                **map_results_to_log(results, self.class_names, stage, "segm", "mask_")}

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        """Per image ``{image_id, path, boxes, scores, labels}`` as :class:`DetectionTask` plus
        ``segmentation``: a COCO RLE dict per detection (its mask in file pixels)."""
        from pycocotools import mask as mask_utils

        images, targets = batch
        preds = self.detector(images, targets, self._proposals(targets))
        out = []
        for p, t in zip(preds, targets):
            binary = (p["masks"] >= self.hparams.mask_thresh).permute(1, 2, 0).cpu().numpy().astype("uint8")
            rles = mask_utils.encode(binary.copy(order="F")) if len(p["scores"]) else []
            out.append({"image_id": int(t["image_id"]), "path": str(t["path"]), "boxes": p["boxes"].float().cpu(),
                        "scores": p["scores"].float().cpu(), "labels": p["labels"].cpu(),
                        "segmentation": [{"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}
                                         for r in rles]})
        return out
