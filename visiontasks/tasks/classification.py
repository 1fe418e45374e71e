"""Image classification on any registered backbone."""

from __future__ import annotations

import csv
import json
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from visiontasks.backbones import build_backbone, build_classifier

from .base import BaseTask


class LinearHead(nn.Module):
    """Global average pooling + one linear layer: ``[N, C, h, w] -> [N, num_classes]``."""

    def __init__(self, channels: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(self.pool(x).flatten(1)))


class ClassificationTask(BaseTask):
    """Classify images with a registered backbone.

    Args:
        backbone: a name from ``visiontasks.backbones.list_backbones()``.
        num_classes: number of classes; must equal the datamodule's.
        head: ``paper`` (the architecture's own classifier, e.g. VGG's 4096-4096 MLP) or ``linear``
            (global average pooling + one linear layer on the deepest feature map).
        weights: ``None``, a torchvision weights name (e.g. ``IMAGENET1K_V1``) or a state_dict path.
        in_chans: input channels (1 or 3); must equal the datamodule's.
        frozen_stages: freeze the first stages of the backbone (transfer learning).
        label_smoothing: cross-entropy label smoothing.
        optimizer / lr_scheduler: from the config, e.g. SGD(momentum=0.9, weight_decay=5e-4) with
            ReduceLROnPlateau(mode=max, factor=0.1) as in the AlexNet/VGG papers, or AdamW.

    Batches are ``{"image": [N, in_chans, H, W], "label": [N] int64, "id": list[str]}``.
    Logged per epoch: ``{stage}/loss``, ``{stage}/acc`` (top-1), ``{stage}/acc_top5`` (more than 5
    classes), ``{stage}/acc_<class>``; the confusion matrix is saved as a PNG in the run folder.
    """

    monitor = "val/acc"
    monitor_mode = "max"

    def __init__(
        self,
        backbone: str = "resnet18",
        num_classes: int = 10,
        head: Literal["paper", "linear"] = "paper",
        weights: str | None = None,
        in_chans: int = 3,
        frozen_stages: int = 0,
        label_smoothing: float = 0.0,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(num_classes, optimizer, lr_scheduler)
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.in_chans = in_chans
        if head == "paper":
            self.model: nn.Module = build_classifier(backbone, num_classes, weights, in_chans, frozen_stages)
        elif head == "linear":
            body = build_backbone(backbone, weights, in_chans, out_indices=[-1], frozen_stages=frozen_stages)
            self.model = nn.Sequential(_Deepest(body), LinearHead(body.out_channels, num_classes))
        else:
            raise ValueError(f"head must be 'paper' or 'linear', got {head!r}")
        self.label_smoothing = label_smoothing
        self.metrics = nn.ModuleDict({s: self._make_metrics() for s in ("val", "test")})
        self.confusion = nn.ModuleDict({s: MulticlassConfusionMatrix(num_classes) for s in ("val", "test")})
        self._predictions: list[dict[str, Any]] = []

    def _make_metrics(self) -> MetricCollection:
        n = self.num_classes
        metrics: dict[str, Any] = {
            "acc": MulticlassAccuracy(n, average="micro"),
            "per_class": MulticlassAccuracy(n, average="none"),
        }
        if n > 5:
            metrics["acc_top5"] = MulticlassAccuracy(n, top_k=5, average="micro")
        # compute_groups off: the top-1, top-5 and per-class states must not be merged
        return MetricCollection(metrics, compute_groups=False)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        dm = getattr(self.trainer, "datamodule", None)
        data_chans = getattr(dm, "in_chans", None)
        if data_chans is not None and data_chans != self.in_chans:
            raise ValueError(
                f"model.in_chans={self.in_chans} but data.in_chans={data_chans}; make them agree in the config"
            )

    def forward(self, x: Tensor) -> Tensor:
        """``[N, in_chans, H, W] -> logits [N, num_classes]``."""
        return self.model(x)

    def _loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(logits.float(), target, label_smoothing=self.label_smoothing)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        logits = self(batch["image"])
        loss = self._loss(logits, batch["label"])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(logits))
        return loss

    def _eval_step(self, batch: dict[str, Any], stage: str) -> None:
        logits = self(batch["image"])
        target = batch["label"]
        self.log(f"{stage}/loss", self._loss(logits, target), sync_dist=True, batch_size=len(logits))
        self.metrics[stage].update(logits.float(), target)
        self.confusion[stage].update(logits.argmax(1), target)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _end_epoch(self, stage: str) -> dict[str, float]:
        values = self.metrics[stage].compute()
        per_class = values.pop("per_class")
        scalars = {f"{stage}/{k}": v for k, v in values.items()}
        scalars.update({f"{stage}/acc_{name}": per_class[i] for i, name in enumerate(self.class_names)})
        self.log_dict({k: v for k, v in scalars.items() if k != f"{stage}/acc"})
        self.log(f"{stage}/acc", values["acc"], prog_bar=True)
        matrix = self.confusion[stage].compute()
        with torch.inference_mode(False):  # fresh states must stay usable by a later fit's validation
            self.metrics[stage].reset()
            self.confusion[stage].reset()
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            self._save_confusion(stage, matrix)
        return {k: float(v) for k, v in scalars.items()}

    def _save_confusion(self, stage: str, matrix: Tensor) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = len(self.class_names)
        fig, ax = plt.subplots(figsize=(max(4, 0.6 * n + 2), max(4, 0.6 * n + 1.5)))
        self.confusion[stage].plot(val=matrix, ax=ax, labels=self.class_names, add_text=n <= 30)
        ax.set_title(f"{stage} confusion matrix" + ("" if stage == "test" else f", epoch {self.current_epoch}"))
        folder = self.run_dir() / "confusion_matrix"
        folder.mkdir(exist_ok=True)
        fig.savefig(folder / f"{stage}.png", dpi=100, bbox_inches="tight")  # the latest epoch's
        for logger in self.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_figure"):  # TensorBoard
                experiment.add_figure(f"{stage}/confusion_matrix", fig, self.current_epoch)
        plt.close(fig)
        (folder / f"{stage}_matrix.json").write_text(
            json.dumps({"classes": self.class_names, "matrix": matrix.tolist()})
        )

    def on_validation_epoch_end(self) -> None:
        self._end_epoch("val")

    def on_test_epoch_end(self) -> None:
        scalars = self._end_epoch("test")
        if self.trainer.is_global_zero:
            (self.run_dir() / "test_metrics.json").write_text(json.dumps(scalars, indent=2))

    # -- predict --------------------------------------------------------------------------------
    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Per image: class index, class name and the probability of every class."""
        probs = self(batch["image"]).float().softmax(1)
        idx = probs.argmax(1)
        return {
            "id": list(batch["id"]),
            "index": idx.tolist(),
            "name": [self.class_names[i] for i in idx.tolist()],
            "probs": probs.tolist(),
        }

    def on_predict_epoch_start(self) -> None:
        self._predictions = []

    def on_predict_batch_end(self, outputs: dict[str, Any], batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        for i, key in enumerate(outputs["id"]):
            row = {"id": key, "index": outputs["index"][i], "name": outputs["name"][i]}
            row.update({f"p_{n}": round(p, 6) for n, p in zip(self.class_names, outputs["probs"][i])})
            self._predictions.append(row)

    def on_predict_epoch_end(self) -> None:
        """Write ``predictions.csv`` and ``predictions.json`` (one file per process under DDP)."""
        folder = self.prediction_dir()
        suffix = f"_rank{self.global_rank}" if self.trainer.world_size > 1 else ""
        rows = self._predictions
        (folder / f"predictions{suffix}.json").write_text(json.dumps(rows, indent=1))
        with open(folder / f"predictions{suffix}.csv", "w", newline="") as f:
            fields = ["id", "index", "name", *[f"p_{n}" for n in self.class_names]]
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        print(f"predictions for {len(rows)} images written to {folder}")


class _Deepest(nn.Module):
    """A backbone returning only its deepest feature map (for the linear head)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x)[self.backbone.out_features[-1]]
