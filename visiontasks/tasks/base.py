"""The template LightningModule every task subclasses (torchgeo's ``BaseTask`` idea, carried further).

It owns hyper-parameters, model building (:meth:`build_model`), one metric collection per evaluation
stage, the training/validation/test steps, epoch-end compute/log/reset, the optimizer and scheduler
from the config, class names and evaluation preprocessing from the data (both saved in checkpoints). A
subclass says only what differs (hooks below, ``predict_step``, the facets of :mod:`.facets`)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection

from visiontasks.errors import InvalidInputError
from visiontasks.preprocessing import Preprocessing
from visiontasks.schedulers import configure_optimization, default_optimizer

from .agreement import adopt_data_settings
from .facets import TaskFacets
from .loss_log import TrainingLossLog, TrainingStep


class BaseTask(TaskFacets, TrainingStep, pl.LightningModule):
    """The settings every task shares, owned here once; a task declares its own (and a default that
    differs, e.g. ``num_classes``) and passes the rest on as ``**kwargs``.

    Args:
        num_classes: number of classes; must equal the datamodule's (the CLI links it from there).
        backbone: a name from ``visiontasks.backbones.list_backbones()``.
        backbone_weights: ``None``, a torchvision weights name (e.g. ``IMAGENET1K_V1``; downloads
            only when given), a state_dict file, or a visiontasks checkpoint of any task (its
            backbone is taken).
        in_chans: input channels (1 or 3); must equal the datamodule's.
        frozen_stages: freeze the first stages of the backbone (transfer learning).
        optimizer: from the config (a LightningCLI callable); default AdamW, lr 1e-3.
        lr_scheduler: from the config (a LightningCLI callable); default none.

    ``monitor`` (a logged metric, e.g. ``"val/acc"``) and ``monitor_mode`` (``"max"``/``"min"``) feed
    checkpointing and ``ReduceLROnPlateau``; ``checked_with_data`` names settings that must equal the
    datamodule's. Subclasses call ``super().__init__`` first: it saves their arguments (those passed
    on in ``**kwargs`` too) as ``self.hparams``, from which :meth:`build_model` reads.
    """

    monitor: str = "val/loss"
    monitor_mode: str = "min"
    checked_with_data: tuple[str, ...] = ()
    stages: tuple[str, ...] = ("val", "test")

    def __init__(
        self,
        num_classes: int,
        *,
        backbone: str = "resnet18",
        backbone_weights: str | None = None,
        in_chans: int = 3,
        frozen_stages: int = 0,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise InvalidInputError(f"num_classes must be >= 1, got {num_classes}")
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])  # also the subclass's arguments
        self.num_classes, self.in_chans = num_classes, in_chans
        self.class_names: list[str] = [str(i) for i in range(num_classes)]
        self.preprocessing: Preprocessing | None = None  # from the data (setup) or the checkpoint
        self.optimizer_factory, self.scheduler_factory = optimizer or default_optimizer, lr_scheduler
        self.build_model()
        self.metrics = nn.ModuleDict({stage: self.build_metrics() for stage in self.stages})
        self.stage_results: dict[str, Any] = {}  # stage -> the last epoch's ``compute()`` output
        self.stage_logged: dict[str, dict[str, float]] = {}  # stage -> the values logged for it
        self.loss_log = TrainingLossLog()

    # -- what a subclass says (then the shared steps) --------------------------------------------
    def build_model(self) -> None:
        """Create the network(s) as attributes, from ``self.hparams``."""
        raise NotImplementedError

    def build_metrics(self) -> Metric | MetricCollection:
        """A fresh metric (collection) for one evaluation stage."""
        raise NotImplementedError

    def training_loss(self, batch: Any) -> Tensor:
        """The scalar loss of a training batch (may log extra parts)."""
        raise NotImplementedError

    def update_metrics(self, metrics: Any, batch: Any) -> Tensor | None:
        """Update ``metrics`` with an evaluation batch; return its loss to log, or ``None``."""
        raise NotImplementedError

    def results_to_log(self, results: Any, stage: str) -> dict[str, Any]:
        """``{"<stage>/<name>": scalar}`` from the metric's ``compute()`` output."""
        raise NotImplementedError

    @staticmethod
    def batch_size(batch: Any) -> int:
        """Images in a batch (``{"image": [N, ...]}`` or ``(images, targets)``)."""
        return len(batch["image"] if isinstance(batch, dict) else batch[0])

    def _eval_step(self, batch: Any, stage: str) -> None:
        loss = self.update_metrics(self.metrics[stage], batch)
        if loss is not None:
            self.log(f"{stage}/loss", loss, sync_dist=True, batch_size=self.batch_size(batch))

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _end_epoch(self, stage: str) -> None:
        metric = self.metrics[stage]
        results = metric.compute()  # torchmetrics syncs the states over processes here
        # Reset to normal tensors even under `validate`'s inference mode: fit's validation may run
        # without it and could not update inference tensors in place.
        with torch.inference_mode(False):
            metric.reset()
        values = self.results_to_log(results, stage)
        main = f"{stage}/{self.monitor.split('/', 1)[-1]}"
        # the values are identical on every process; sync_dist changes nothing but tells Lightning so
        for key, value in values.items():
            self.log(key, value, prog_bar=key == main, sync_dist=True)
        self.stage_results[stage] = results
        self.stage_logged[stage] = {k: float(v) for k, v in values.items()}

    def on_validation_epoch_end(self) -> None:
        self._end_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._end_epoch("test")

    def setup(self, stage: str) -> None:
        """Take the class names and preprocessing from the datamodule (its ``setup`` runs first) and
        check the settings that must agree with it (:func:`~.agreement.adopt_data_settings`)."""
        adopt_data_settings(self, getattr(self.trainer, "datamodule", None) if self._trainer else None)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint.update(task_class=f"{type(self).__module__}.{type(self).__name__}", class_names=list(self.class_names))
        checkpoint["preprocessing"] = self.preprocessing.to_dict() if self.preprocessing is not None else None

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.class_names = list(checkpoint.get("class_names", self.class_names))
        if checkpoint.get("preprocessing"):
            self.preprocessing = Preprocessing.from_dict(checkpoint["preprocessing"])

    def configure_optimizers(self) -> Any:
        return configure_optimization(self.parameters(), self.optimizer_factory, self.scheduler_factory, self._trainer,
                                      self.monitor, self.monitor_mode, type(self).__name__)
