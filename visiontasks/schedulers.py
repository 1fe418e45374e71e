"""Budget-aware learning-rate schedules: anneal by the elapsed fraction of the run's budget.

The budget is a number of optimizer steps, a wall-clock time, or both; whichever runs out first
decides: ``progress = min(1, max(step / max_steps, elapsed_s / max_time))``. So a run that
``max_time`` stops early still finishes its schedule (Li, Yumer & Ramanan, "Budgeted Training",
ICLR 2020: linear decay to zero at the budget did best).

Under a Trainer, :class:`~visiontasks.tasks.base.BaseTask` steps it every batch and fills the budget
from :func:`trainer_budget` (``estimated_stepping_batches``, and ``max_time`` through the Trainer's
``Timer`` callback, whose clock also counts validation time).
"""

from __future__ import annotations

import math
import re
import time
from datetime import timedelta
from typing import Any, Callable, Literal

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from visiontasks.errors import InvalidInputError

Clock = Callable[[], float]  # seconds of the budget spent so far


def parse_duration(value: float | str | timedelta | None) -> float | None:
    """Seconds from a number of seconds, a ``timedelta`` or Lightning's ``"DD:HH:MM:SS"``."""
    if value is None or isinstance(value, (int, float)):
        return None if value is None else float(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    match = re.fullmatch(r"(\d+):(\d\d):(\d\d):(\d\d)", value.strip())
    if not match:
        raise InvalidInputError(f"max_time={value!r}: give seconds or a DD:HH:MM:SS string, e.g. 00:00:10:00")
    d, h, m, s = (int(g) for g in match.groups())
    return timedelta(days=d, hours=h, minutes=m, seconds=s).total_seconds()


class BudgetScheduler(LRScheduler):
    """Linear-to-zero or cosine annealing over a step and/or wall-clock budget, with optional
    linear warmup; step it once per optimizer step.

    The rate of each parameter group is ``base_lr * factor`` where, with ``p`` the budget progress
    (0..1) and ``q`` the progress after warmup rescaled to 0..1,
    ``factor = min_lr_ratio + (1 - min_lr_ratio) * shape(q)``, ``shape`` being ``1 - q`` (linear)
    or ``(1 + cos(pi q)) / 2`` (cosine). During warmup the factor rises linearly from 0 to 1.

    Args:
        optimizer: its groups' ``lr`` are the peak rates.
        schedule: ``"linear"`` (to ``min_lr_ratio`` at the budget) or ``"cosine"``.
        warmup: below 1, a fraction of the budget (``p < warmup``: ``factor = p / warmup``); from 1
            up, a number of steps (``factor = step / warmup``), the annealing then running from
            wherever the budget stands when warmup ends. 0: no warmup.
        min_lr_ratio: the final rate as a fraction of the peak.
        max_steps: the step budget (optimizer steps). ``None``: filled from the Trainer.
        max_time: the wall-clock budget, seconds or ``"DD:HH:MM:SS"``. ``None``: filled from the
            Trainer's ``max_time``.

    Values given here win over the Trainer's (see :meth:`set_budget`). Time is read from a clock:
    the Trainer's ``Timer`` under Lightning, else the scheduler's own monotonic clock started at
    construction. ``state_dict`` holds the elapsed time, so a resumed run continues its schedule.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        schedule: Literal["linear", "cosine"] = "linear",
        warmup: int | float = 0.0,
        min_lr_ratio: float = 0.0,
        max_steps: int | None = None,
        max_time: float | str | None = None,
    ) -> None:
        if schedule not in ("linear", "cosine"):
            raise InvalidInputError(f"schedule={schedule!r}: choose 'linear' or 'cosine'")
        if warmup < 0 or (warmup >= 1 and warmup != int(warmup)):
            raise InvalidInputError(f"warmup={warmup}: give a fraction in [0, 1) or a whole number of steps")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise InvalidInputError(f"min_lr_ratio={min_lr_ratio}: must be in [0, 1]")
        if max_steps is not None and max_steps < 1:
            raise InvalidInputError(f"max_steps={max_steps}: must be >= 1 (or None to take the Trainer's)")
        self.schedule = schedule
        self.warmup = float(warmup)
        self.min_lr_ratio = float(min_lr_ratio)
        self.max_steps = max_steps
        self.max_time = parse_duration(max_time)
        if self.max_time is not None and self.max_time <= 0:
            raise InvalidInputError(f"max_time={max_time!r}: must be positive")
        self._clock: Clock | None = None
        self._offset = 0.0  # own clock: seconds spent before this process (restored on resume)
        self._t0 = time.monotonic()
        self._last_elapsed = 0.0  # the clock's latest reading
        self._anneal_from: float | None = None  # progress when a step-count warmup ended
        super().__init__(optimizer)

    # -- budget -----------------------------------------------------------------------------------
    def set_budget(
        self, max_steps: int | None = None, max_time: float | str | None = None, clock: Clock | None = None
    ) -> BudgetScheduler:
        """Fill the budget parts not given at construction, and set the clock (seconds elapsed,
        e.g. a Lightning ``Timer``'s ``time_elapsed``). Re-applies the current step's rates."""
        if self.max_steps is None and max_steps is not None:
            self.max_steps = int(max_steps)
        if self.max_time is None:
            self.max_time = parse_duration(max_time)
        if clock is not None:
            self._clock = clock
        if self.max_steps is None and self.max_time is None:
            raise InvalidInputError(
                "BudgetScheduler has no budget: set trainer.max_steps, max_epochs or max_time "
                "(or the scheduler's max_steps / max_time)"
            )
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        return self

    def elapsed(self) -> float:
        """Seconds of the time budget spent so far."""
        if self._clock is not None:
            self._last_elapsed = float(self._clock())
        else:
            self._last_elapsed = self._offset + time.monotonic() - self._t0
        return self._last_elapsed

    def progress(self) -> float:
        """Fraction of the budget spent after ``last_epoch`` steps: the larger of the step and
        time fractions, at most 1."""
        fractions = [0.0]
        if self.max_steps:
            fractions.append(self.last_epoch / self.max_steps)
        if self.max_time:
            fractions.append(self.elapsed() / self.max_time)
        elif self.max_steps is None and self.last_epoch > 0:
            raise InvalidInputError(
                "BudgetScheduler has no budget: give max_steps or max_time, or train it under a "
                "Trainer with max_steps, max_epochs or max_time"
            )
        return min(1.0, max(fractions))

    def factor(self) -> float:
        """The rate multiplier for the current step (see the class docstring)."""
        p = self.progress()
        start = 0.0
        if self.warmup >= 1:  # a number of steps
            if self.last_epoch < self.warmup:
                return self.last_epoch / self.warmup
            if self._anneal_from is None:
                self._anneal_from = p
            start = self._anneal_from
        elif self.warmup > 0:  # a fraction of the budget
            if p < self.warmup:
                return p / self.warmup
            start = self.warmup
        q = 1.0 if start >= 1.0 else min(1.0, max(0.0, (p - start) / (1.0 - start)))
        shape = 1.0 - q if self.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * q))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * shape

    def get_lr(self) -> list[float]:
        f = self.factor()
        return [base * f for base in self.base_lrs]

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The step count and warmup state, plus ``elapsed`` (seconds) under a time budget. The clock (a callable) is
        left out, and an injected clock is not read here (under DDP reading it is a collective
        call): its latest reading, from the last step, is stored."""
        state = {
            k: v for k, v in super().state_dict().items()
            if k not in ("_clock", "_t0", "_offset", "_last_elapsed")
        }
        if self.max_time:  # the schedule depends on time only with a time budget
            state["elapsed"] = self._last_elapsed if self._clock is not None else self.elapsed()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue a schedule: the step count, and the elapsed time for the scheduler's own clock
        (a Lightning ``Timer`` restores its own elapsed time from the same checkpoint). The budget
        and shape stay as configured in this run."""
        state = dict(state_dict)
        elapsed = float(state.pop("elapsed", 0.0))
        for key in ("max_steps", "max_time", "schedule", "warmup", "min_lr_ratio"):
            state.pop(key, None)
        super().load_state_dict(state)
        self._offset, self._t0, self._last_elapsed = elapsed, time.monotonic(), elapsed


def trainer_budget(trainer: Any) -> dict[str, Any]:
    """``set_budget`` arguments from a Lightning Trainer, called in ``configure_optimizers`` (before
    training starts): ``max_steps`` from ``estimated_stepping_batches`` (``max_steps`` or
    ``max_epochs`` x batches per epoch / gradient accumulation; ``None`` when unbounded), and, when
    the Trainer has a ``Timer`` callback (``max_time``), its duration and its clock. The Timer's
    clock counts training time since ``on_train_start`` including validation, and its elapsed time is
    saved in checkpoints and restored on resume; under DDP rank 0's reading is broadcast so every
    process uses the same rate."""
    from lightning.pytorch.callbacks import Timer

    steps = trainer.estimated_stepping_batches
    budget: dict[str, Any] = {"max_steps": int(steps) if math.isfinite(steps) and steps > 0 else None}
    timer = next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)
    if timer is not None:
        remaining = timer.time_remaining()
        # before on_train_start the Timer's elapsed time is a constant, so this is its duration
        budget["max_time"] = None if remaining is None else remaining + timer.time_elapsed()
        if trainer.world_size > 1:
            strategy = trainer.strategy
            budget["clock"] = lambda: strategy.broadcast(timer.time_elapsed(), src=0)
        else:
            budget["clock"] = timer.time_elapsed
    return budget


def scheduler_config(scheduler: Any, trainer: Any, monitor: str, monitor_mode: str) -> dict[str, Any]:
    """Lightning's ``lr_scheduler`` entry for ``scheduler``: per-batch schedulers (OneCycleLR,
    CyclicLR, BudgetScheduler: their lengths count batches) step every batch, the rest every epoch;
    a BudgetScheduler gets the run's step and ``max_time`` budget from ``trainer``;
    ReduceLROnPlateau follows ``monitor`` (its mode must be ``monitor_mode``) and skips epochs
    without validation (``check_val_every_n_epoch > 1``) instead of failing."""
    from torch.optim.lr_scheduler import CyclicLR, OneCycleLR, ReduceLROnPlateau

    from visiontasks.errors import InvalidInputError

    if isinstance(scheduler, BudgetScheduler) and trainer is not None:
        scheduler.set_budget(**trainer_budget(trainer))
    interval = "step" if isinstance(scheduler, (OneCycleLR, CyclicLR, BudgetScheduler)) else "epoch"
    config: dict[str, Any] = {"scheduler": scheduler, "interval": interval}
    if isinstance(scheduler, ReduceLROnPlateau):
        if scheduler.mode != monitor_mode:
            raise InvalidInputError(
                f"ReduceLROnPlateau mode={scheduler.mode!r} but {monitor} is to be {monitor_mode}imised; "
                f"set lr_scheduler.init_args.mode: {monitor_mode}"
            )
        config.update(monitor=monitor, strict=False)
    return config


def default_optimizer(params: Any) -> Optimizer:
    """AdamW, lr 1e-3, weight decay 1e-4 (the optimizer of a task whose config names none)."""
    import torch

    return torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)


def configure_optimization(
    params: Any, optimizer_factory: Callable | None, scheduler_factory: Callable | None, trainer: Any,
    monitor: str, monitor_mode: str, owner: str,
) -> Any:
    """What a task's ``configure_optimizers`` returns: the optimizer of the trainable ``params`` (the
    config's callable, else :func:`default_optimizer`) and, with ``scheduler_factory``, its
    :func:`scheduler_config`. ``owner`` (the task's class name) names a model with nothing to train."""
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise InvalidInputError(f"{owner} has no trainable parameters (all frozen?)")
    optimizer = (optimizer_factory or default_optimizer)(trainable)
    if scheduler_factory is None:
        return optimizer
    scheduler = scheduler_factory(optimizer)
    return {"optimizer": optimizer, "lr_scheduler": scheduler_config(scheduler, trainer, monitor, monitor_mode)}
