"""Keypoint detection: a detector that also returns each object's keypoints (Keypoint R-CNN).

A :class:`DetectionTask` in everything but what it measures and returns, like
:class:`~visiontasks.tasks.instance_segmentation.InstanceSegmentationTask`: box AP plus keypoint AP
by OKS, and per-image keypoints next to the boxes. It is its own class (rather than
``DetectionTask(model: keypoint_rcnn)``) because those differences are the task's: its metric (OKS
needs the data set's per-keypoint sigmas), the value checkpoints are chosen by (``val/kp_mAP``), the
keypoint metadata it keeps in checkpoints (names, skeleton, sigmas) and its outputs (keypoints in
the COCO results, the skeleton drawn). The batch layout, result type, writers and export wrapper
are detection's.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torchmetrics import MetricCollection

from visiontasks.errors import InvalidInputError
from visiontasks.heads.detector import DETECTORS
from visiontasks.metrics.detection import make_map_metric, map_results_to_log
from visiontasks.metrics.keypoints import KeypointAP
from visiontasks.ops import boxes_to_original, default_sigmas, keypoints_to_original

from .detection import Batch, DetectionTask

KEYPOINT_METADATA = ("keypoint_names", "skeleton", "keypoint_sigmas")  # from the data, kept in checkpoints


class KeypointDetectionTask(DetectionTask):
    """Train and evaluate a keypoint detector (``model: keypoint_rcnn``) on a registered backbone; the
    data must be read with ``keypoints: true`` (targets carry ``keypoints`` float ``[K, P, 3]``).

    Args: as :class:`DetectionTask` (``model_kwargs`` and :class:`BaseTask`'s shared settings pass on
    as ``**kwargs``), with ``model: keypoint_rcnn``; ``num_keypoints``: keypoints per object, must
    equal the datamodule's (given to the detector; COCO person: 17).

    Read from the datamodule at ``setup`` and saved in checkpoints: ``keypoint_names``, ``skeleton``
    (0-based index pairs, drawn by the writers) and ``keypoint_sigmas`` (OKS; COCO's for 17 keypoints,
    else ``1 / P`` each, until the data says otherwise).

    Logged per evaluation epoch, all in the pixels of the image files: box AP as the detection task
    (``{val,test}/mAP``, ``mAP50``, ``mAP75``, ``mAR100``, ``AP/<class>``) and keypoint AP by OKS
    (``{val,test}/kp_mAP``, ``kp_mAP50``, ``kp_mAP75``, ``kp_mAR``; see :mod:`visiontasks.metrics.keypoints`).
    ``predict_step`` adds per image ``keypoints`` float ``[D, P, 3]`` (x, y in file pixels, the
    keypoint score) and ``skeleton``.
    """

    monitor = "val/kp_mAP"

    def __init__(self, model: str = "keypoint_rcnn", backbone: str = "resnet18", num_classes: int = 1, *,
                 num_keypoints: int = 17, **kwargs: Any) -> None:
        if num_keypoints < 1:
            raise InvalidInputError(f"num_keypoints must be >= 1, got {num_keypoints}")
        super().__init__(model, backbone, num_classes, **kwargs)
        self.keypoint_names = [str(i) for i in range(num_keypoints)]
        self.skeleton: list[tuple[int, int]] = []
        self.keypoint_sigmas = default_sigmas(num_keypoints)

    def build_model(self) -> None:
        h = self.hparams
        given = (h.model_kwargs or {}).get("num_keypoints", h.num_keypoints)
        if given != h.num_keypoints:
            raise InvalidInputError(f"model.num_keypoints={h.num_keypoints} but model_kwargs.num_keypoints={given}; "
                                    "give it once, as model.num_keypoints")
        factory = DETECTORS.get(h.model)  # an unknown name is build_detector's error
        if factory is not None and not getattr(factory, "needs_keypoints", False):
            raise InvalidInputError(f"model {h.model!r} returns no keypoints; keypoint detection needs "
                                    "model: keypoint_rcnn (for boxes only use DetectionTask)")
        h.model_kwargs = {**(h.model_kwargs or {}), "num_keypoints": h.num_keypoints}
        super().build_model()

    def build_metrics(self) -> MetricCollection:
        sigmas = default_sigmas(self.hparams.num_keypoints)  # the data's replace them at setup
        return MetricCollection({"box": make_map_metric(), "keypoints": KeypointAP(sigmas)}, compute_groups=False)

    def setup(self, stage: str) -> None:
        data = getattr(self.trainer, "datamodule", None) if self._trainer else None
        theirs = getattr(data, "num_keypoints", None)
        if theirs is not None and theirs != self.hparams.num_keypoints:
            hint = "read the data with keypoints: true" if theirs == 0 else "make them agree in the config"
            raise InvalidInputError(f"model.num_keypoints={self.hparams.num_keypoints} but data.num_keypoints="
                                    f"{theirs}; {hint}")
        super().setup(stage)
        for attr in KEYPOINT_METADATA:
            if getattr(data, attr, None) is not None:
                setattr(self, attr, [tuple(v) if isinstance(v, (list, tuple)) else v for v in getattr(data, attr)])
        self._use_sigmas()

    def _use_sigmas(self) -> None:
        for metrics in self.metrics.values():
            metrics["keypoints"].sigmas = [float(s) for s in self.keypoint_sigmas]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint.update({attr: [list(v) if isinstance(v, tuple) else v for v in getattr(self, attr)]
                           for attr in KEYPOINT_METADATA})

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.keypoint_names = list(checkpoint.get("keypoint_names", self.keypoint_names))
        self.skeleton = [tuple(p) for p in checkpoint.get("skeleton", self.skeleton)]
        self.keypoint_sigmas = list(checkpoint.get("keypoint_sigmas", self.keypoint_sigmas))
        self._use_sigmas()

    def _detect_original(self, batch: Batch) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
        """Detections (with ``keypoints``) and ground truth (with ``keypoints`` when the targets carry
        them), both in the pixels of the image files."""
        images, targets = batch
        preds = self.detector(images, targets, self._proposals(targets))
        preds_o, gts_o = [], []
        for p, t in zip(preds, targets):
            boxes, gt = t["boxes"].float(), {"labels": t["labels"]}
            kp = t["keypoints"].float() if "keypoints" in t else None
            if "image_box" in t and "orig_size" in t:
                boxes = boxes_to_original(boxes, t["image_box"], t["orig_size"])
                kp = None if kp is None else keypoints_to_original(kp, t["image_box"], t["orig_size"])
            if kp is not None:
                gt["keypoints"] = kp
            preds_o.append({"boxes": p["boxes"].float(), "scores": p["scores"].float(), "labels": p["labels"],
                            "keypoints": p["keypoints"].float()})
            gts_o.append({"boxes": boxes, **gt})
        return preds_o, gts_o

    def update_metrics(self, metrics: MetricCollection, batch: Batch) -> None:
        preds, gts = self._detect_original(batch)
        if any("keypoints" not in g for g in gts):
            raise InvalidInputError("keypoint detection is evaluated on keypoints: set data.init_args.keypoints: true")
        metrics.update(preds, gts)

    def results_to_log(self, results: dict[str, Tensor], stage: str) -> dict[str, float]:
        return {**map_results_to_log(results, self.class_names, stage),
                **{f"{stage}/kp_{name}": float(results[key]) for name, key in
                   (("mAP", "kp_map"), ("mAP50", "kp_map_50"), ("mAP75", "kp_map_75"), ("mAR", "kp_mar"))}}

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        """Per image ``{image_id, path, boxes, scores, labels}`` as :class:`DetectionTask` plus
        ``keypoints`` float ``[D, P, 3]`` (x, y in file pixels, score) and ``skeleton``."""
        _, targets = batch
        preds, _ = self._detect_original(batch)
        return [{"image_id": int(t["image_id"]), "path": str(t["path"]), "boxes": p["boxes"].cpu(),
                 "scores": p["scores"].cpu(), "labels": p["labels"].cpu(), "keypoints": p["keypoints"].cpu(),
                 "skeleton": [list(e) for e in self.skeleton]}
                for p, t in zip(preds, targets)]
