"""The training loss as a task logs it: ``train/loss_step`` on the steps the logger writes,
``train/loss_epoch`` and ``train/loss`` (the epoch's mean) at each epoch end."""

from __future__ import annotations

from typing import Any

from torch import Tensor


class TrainingLossLog:
    """Sums the loss over an epoch (weighted by batch size, as Lightning's ``on_epoch`` mean) and
    calls ``self.log`` only when the logger writes: on the first step and every
    ``trainer.log_every_n_steps``. A ``self.log(on_step=True, on_epoch=True)`` on every step cost
    2.4 ms of a 10 ms LeNet-5 step on 2 cores (Lightning's result bookkeeping); the sum costs one
    tensor add."""

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

    def epoch_end(self, task: Any) -> None:
        if self.count:
            mean = self.total / self.count
            task.log("train/loss_epoch", mean, prog_bar=True, on_epoch=True)
            task.log("train/loss", mean, on_epoch=True)
            self.total, self.count = 0.0, 0
