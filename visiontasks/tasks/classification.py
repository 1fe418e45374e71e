"""Image classification on any registered backbone."""

from __future__ import annotations

from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from visiontasks.backbones import build_backbone, build_classifier
from visiontasks.errors import InvalidInputError
from visiontasks.heads.cam import class_activation_maps, class_index, maps_to_input
from visiontasks.heads.classification import DeepestFeature, LinearHead

from .base import BaseTask


class ClassificationTask(BaseTask):
    """Classify images with a registered backbone.

    Args:
        backbone: a name from ``visiontasks.backbones.list_backbones()``.
        num_classes: number of classes; must equal the datamodule's.
        head: ``paper`` (the architecture's own classifier, e.g. VGG's 4096-4096 MLP) or ``linear``
            (global average pooling + one linear layer on the deepest feature map).
        backbone_weights: ``None``, a torchvision weights name (e.g. ``IMAGENET1K_V1``), a
            state_dict file, or a visiontasks checkpoint of any task (its backbone is taken).
        in_chans: input channels (1 or 3); must equal the datamodule's.
        frozen_stages: freeze the first stages of the backbone (transfer learning).
        label_smoothing: cross-entropy label smoothing.
        optimizer / lr_scheduler: from the config, e.g. SGD(momentum=0.9, weight_decay=5e-4) with
            ReduceLROnPlateau(mode=max, factor=0.1) as in the AlexNet/VGG papers, or AdamW.

    ``backbone``, ``num_classes`` and ``head`` may be given by position, the rest by keyword; the
    settings every task shares (``backbone_weights``, ``in_chans``, ``frozen_stages``, ``optimizer``,
    ``lr_scheduler``) are :class:`BaseTask`'s, passed on as ``**kwargs``.

    Batches are ``{"image": [N, in_chans, H, W], "label": [N] int64, "id": list[str]}``.
    Logged per epoch: ``{stage}/loss``, ``{stage}/acc`` (top-1), ``{stage}/acc_top5`` (more than 5
    classes), ``{stage}/acc_<class>``; the confusion matrix (``stage_results[stage]["confmat"]``) is
    saved as a PNG by ``visiontasks.outputs.ConfusionMatrixPlot``.
    """

    monitor = "val/acc"
    monitor_mode = "max"
    checked_with_data = ("in_chans",)
    family = "classification"
    result_type = "visiontasks.results.ClassificationResult"
    prediction_data = "visiontasks.data.classification.dataset"
    output_callbacks = "visiontasks.outputs.classification.task_callbacks"
    export_wrapper = "visiontasks.export.wrappers.ClassifierExport"

    def __init__(
        self,
        backbone: str = "resnet18",
        num_classes: int = 10,
        head: Literal["paper", "linear"] = "paper",
        *,
        label_smoothing: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, backbone=backbone, **kwargs)
        self.label_smoothing = label_smoothing
        self.cam_request: tuple[bool, str | None] = (False, None)  # set by enable_cam (predict only)

    def build_model(self) -> None:
        h = self.hparams
        if h.head == "paper":
            self.model: nn.Module = build_classifier(
                h.backbone, self.num_classes, h.backbone_weights, h.in_chans, h.frozen_stages
            )
        elif h.head == "linear":
            body = build_backbone(h.backbone, h.backbone_weights, h.in_chans, out_indices=[-1],
                                  frozen_stages=h.frozen_stages)
            self.model = nn.Sequential(DeepestFeature(body), LinearHead(body.out_channels, self.num_classes))
        else:
            raise InvalidInputError(f"head must be 'paper' or 'linear', got {h.head!r}")

    def build_metrics(self) -> MetricCollection:
        n = self.num_classes
        metrics: dict[str, Any] = {
            "acc": MulticlassAccuracy(n, average="micro"),
            "per_class": MulticlassAccuracy(n, average="none"),
            "confmat": MulticlassConfusionMatrix(n),  # rows: truth, columns: prediction
        }
        if n > 5:
            metrics["acc_top5"] = MulticlassAccuracy(n, top_k=5, average="micro")
        # compute_groups off: the top-1, top-5 and per-class states must not be merged
        return MetricCollection(metrics, compute_groups=False)

    def forward(self, x: Tensor) -> Tensor:
        """``[N, in_chans, H, W] -> logits [N, num_classes]``."""
        return self.model(x)

    def _loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(logits.float(), target, label_smoothing=self.label_smoothing)

    def training_loss(self, batch: dict[str, Any]) -> Tensor:
        return self._loss(self(batch["image"]), batch["label"])

    def update_metrics(self, metrics: MetricCollection, batch: dict[str, Any]) -> Tensor:
        logits = self(batch["image"])
        metrics.update(logits.float(), batch["label"])  # the confusion matrix takes the argmax
        return self._loss(logits, batch["label"])

    def results_to_log(self, results: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        values = {f"{stage}/{k}": v for k, v in results.items() if k not in ("per_class", "confmat")}
        values.update({f"{stage}/acc_{name}": results["per_class"][i] for i, name in enumerate(self.class_names)})
        return values

    def enable_cam(self, on: bool = True, cam_class: str | None = None) -> None:
        """With ``on``, :meth:`predict_step` adds each image's class activation map
        (:mod:`visiontasks.heads.cam`: CAM for a GAP + linear head, else Grad-CAM) of its predicted
        class, or of the class named ``cam_class``."""
        self.cam_request = (bool(on), cam_class)

    def on_predict_start(self) -> None:
        if self.cam_request[0]:  # an unknown class name stops here, before any file is written
            class_index(self.cam_request[1], self.class_names)

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        """Per image ``{"id": str, "index": int, "probs": float [num_classes]}`` (softmax); after
        :meth:`enable_cam` also ``"cam"`` float [H, W] over the model input (its pixels; a stretch of
        the file), ``"cam_class"`` (the map's class index) and ``"cam_method"`` (``cam``/``grad-cam``)."""
        x = batch["image"]
        if not self.cam_request[0]:
            probs = self(x).float().softmax(1)
            return [{"id": str(key), "index": int(k), "probs": p}
                    for key, k, p in zip(batch["id"], probs.argmax(1).tolist(), probs)]
        found = class_activation_maps(self.model, x, class_index(self.cam_request[1], self.class_names))
        probs, maps = found.logits.float().softmax(1), maps_to_input(found.maps, found.stride, x.shape[-2:])
        return [{"id": str(key), "index": int(k), "probs": p, "cam": m, "cam_class": int(c), "cam_method": found.method}
                for key, k, p, m, c in zip(batch["id"], probs.argmax(1).tolist(), probs, maps, found.classes.tolist())]
