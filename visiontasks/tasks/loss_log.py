"""The training loss as a task logs it: ``train/loss_step`` on the steps the logger writes,
``train/loss_epoch`` and ``train/loss`` (the epoch's mean) after the epoch's last batch."""

from __future__ import annotations

from typing import Any

from torch import Tensor


class TrainingLossLog:
    """Sums the loss over an epoch (weighted by batch size, as Lightning's ``on_epoch`` mean) and
    calls ``self.log`` only when the logger writes: on the first step and every
    ``trainer.log_every_n_steps``. A ``self.log(on_step=True, on_epoch=True)`` on every step cost
    2.4 ms of a 10 ms LeNet-5 step on 2 cores (Lightning's result bookkeeping); the sum costs one
    tensor add.

    The epoch mean is logged after the epoch's last batch (``on_train_batch_end``), or the batch
    after which the run stops (``max_steps``, ``max_time``), so that callbacks' ``on_train_epoch_end``
    (which Lightning calls before the task's) see it as they saw Lightning's own ``on_epoch`` value;
    ``epoch_end`` logs what an epoch of unknown length left."""

    def __init__(self) -> None:
        self.total: Tensor | float = 0.0
        self.count = 0

    def step(self, task: Any, loss: Tensor, batch_size: int, batch_idx: int) -> None:
        if batch_idx == 0:
            self.total, self.count = 0.0, 0
        self.total = self.total + loss.detach() * batch_size
        self.count += batch_size
        trainer = task._trainer
        every = max(1, int(getattr(trainer, "log_every_n_steps", 1) or 1))
        if task.global_step == 0 or (task.global_step + 1) % every == 0:
            task.log("train/loss_step", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=batch_size)

    def batch_end(self, task: Any, batch_idx: int) -> None:
        trainer = task._trainer
        if trainer is None:
            return
        last = batch_idx + 1 >= trainer.num_training_batches
        stops = trainer.should_stop or 0 < trainer.max_steps <= task.global_step
        if last or stops:
            self.epoch_end(task)

    def epoch_end(self, task: Any) -> None:
        if self.count:
            mean = self.total / self.count
            # on_step=False: logged from on_train_batch_end, Lightning's default would be on_step=True
            # too and the names would fork (train/loss_epoch_step, train/loss_epoch_epoch); batch_size
            # given: Lightning would otherwise guess it from the current batch (and warn)
            once = {"on_step": False, "on_epoch": True, "batch_size": self.count}
            task.log("train/loss_epoch", mean, prog_bar=True, **once)
            task.log("train/loss", mean, **once)
            self.total, self.count = 0.0, 0


class TrainingStep:
    """The training step and loss logging of :class:`~visiontasks.tasks.base.BaseTask` (a mixin): the
    task's ``training_loss(batch)``, logged through its ``loss_log`` (:class:`TrainingLossLog`)."""

    loss_log: TrainingLossLog

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss = self.training_loss(batch)  # type: ignore[attr-defined]
        self.loss_log.step(self, loss, self.batch_size(batch), batch_idx)  # type: ignore[attr-defined]
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.loss_log.batch_end(self, batch_idx)

    def on_train_epoch_end(self) -> None:
        self.loss_log.epoch_end(self)
