"""BudgetScheduler: the lr curve against hand-computed formulas over step and time budgets, resume,
and the wiring through BaseTask, the Trainer's Timer and the CLI."""

from __future__ import annotations

import io
import math
import types
from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import lightning.pytorch.callbacks.timer as timer_module
import pytest
import torch
from torchmetrics import MeanMetric
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from visiontasks.cli import main as cli_main
from visiontasks.schedulers import BudgetScheduler, parse_duration
from visiontasks.tasks.base import BaseTask

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "classification" / "lenet5_digits.yaml"
PEAK = 0.1


def optimizer(lr: float = PEAK) -> torch.optim.Optimizer:
    return torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=lr)


def curve(scheduler: BudgetScheduler, steps: int, before_step=None) -> list[float]:
    """The rate at steps 0..steps (the rate in force for the batch of that index)."""
    lrs = [scheduler.get_last_lr()[0]]
    for _ in range(steps):
        if before_step is not None:
            before_step()
        scheduler.optimizer.step()
        scheduler.step()
        lrs.append(scheduler.get_last_lr()[0])
    return lrs


def expected(step: int, n: int, schedule: str, warmup: float, floor: float) -> float:
    """The formula written out for a step budget of n steps."""
    w = warmup / n if warmup >= 1 else warmup  # warmup as a fraction of the budget
    p = step / n
    if p < w:
        return PEAK * p / w
    q = (p - w) / (1 - w)
    shape = 1 - q if schedule == "linear" else 0.5 * (1 + math.cos(math.pi * q))
    return PEAK * (floor + (1 - floor) * shape)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("warmup", [0.0, 0.25, 5])
@pytest.mark.parametrize("floor", [0.0, 0.1])
def test_step_budget_curve_matches_formula(schedule: str, warmup: float, floor: float) -> None:
    n = 20
    s = BudgetScheduler(optimizer(), schedule=schedule, warmup=warmup, min_lr_ratio=floor, max_steps=n)
    lrs = curve(s, n + 3)
    want = [expected(min(i, n), n, schedule, warmup, floor) for i in range(n + 4)]
    assert lrs == pytest.approx(want, abs=1e-12)
    assert lrs[-1] == pytest.approx(PEAK * floor)  # held at the floor past the budget
    if warmup:
        assert lrs[0] == 0.0 and max(lrs) == pytest.approx(PEAK)


def test_linear_without_warmup_spot_values() -> None:
    s = BudgetScheduler(optimizer(), max_steps=4)
    assert curve(s, 4) == pytest.approx([0.1, 0.075, 0.05, 0.025, 0.0])
    c = BudgetScheduler(optimizer(), schedule="cosine", max_steps=4, min_lr_ratio=0.1)
    assert curve(c, 2) == pytest.approx([0.1, 0.01 + 0.09 * (1 + math.sqrt(0.5)) / 2, 0.055])


def test_time_budget_with_a_fake_clock_reaches_zero_at_the_deadline() -> None:
    now = [0.0]

    def tick() -> None:
        now[0] += 1.5

    s = BudgetScheduler(optimizer(), max_time="00:00:00:15").set_budget(clock=lambda: now[0])
    lrs = curve(s, 12, before_step=tick)
    assert lrs[:11] == pytest.approx([PEAK * (1 - 1.5 * i / 15) for i in range(11)])
    assert lrs[10] == pytest.approx(0.0, abs=1e-12) and lrs[-1] == 0.0  # 15 s: done, and stays done


def test_whichever_budget_ends_first_decides() -> None:
    now = [0.0]
    s = BudgetScheduler(optimizer(), max_steps=100, max_time=10.0).set_budget(clock=lambda: now[0])
    now[0] = 5.0  # time: half, steps: 1/100
    assert curve(s, 1)[-1] == pytest.approx(PEAK * 0.5)
    s = BudgetScheduler(optimizer(), max_steps=4, max_time=1000.0).set_budget(clock=lambda: now[0])
    assert curve(s, 2)[-1] == pytest.approx(PEAK * 0.5)  # steps: half, time: 5/1000


def test_values_given_win_over_the_trainer_budget() -> None:
    s = BudgetScheduler(optimizer(), max_steps=10).set_budget(max_steps=1000, max_time=None)
    assert s.max_steps == 10 and s.max_time is None
    s = BudgetScheduler(optimizer()).set_budget(max_steps=1000, max_time="00:00:01:00")
    assert s.max_steps == 1000 and s.max_time == 60.0


def test_bad_settings_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="'linear' or 'cosine'"):
        BudgetScheduler(optimizer(), schedule="step")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="whole number of steps"):
        BudgetScheduler(optimizer(), warmup=2.5)
    with pytest.raises(ValueError, match="DD:HH:MM:SS"):
        BudgetScheduler(optimizer(), max_time="10 minutes")
    with pytest.raises(ValueError, match="no budget"):
        BudgetScheduler(optimizer()).set_budget()
    with pytest.raises(ValueError, match="no budget"):
        curve(BudgetScheduler(optimizer()), 1)
    assert parse_duration("01:02:03:04") == 86400 + 7200 + 180 + 4


def test_state_dict_resume_continues_the_step_schedule() -> None:
    n, cut = 20, 7
    settings = dict(schedule="cosine", warmup=3, min_lr_ratio=0.05, max_steps=n)
    whole = curve(BudgetScheduler(optimizer(), **settings), n)
    first = BudgetScheduler(optimizer(), **settings)
    head = curve(first, cut)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    opt = optimizer()
    second = BudgetScheduler(opt, **settings)
    second.load_state_dict(torch.load(buffer, weights_only=False))
    opt.param_groups[0]["lr"] = head[-1]  # as the optimizer's own state_dict restores it
    assert head + curve(second, n - cut)[1:] == pytest.approx(whole)


def test_own_clock_survives_a_resume(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a Trainer, the scheduler's own clock counts; state_dict carries the elapsed seconds
    into the next process, whose clock starts elsewhere."""
    now = [1000.0]
    monkeypatch.setattr("visiontasks.schedulers.time", types.SimpleNamespace(monotonic=lambda: now[0]))
    first = BudgetScheduler(optimizer(), max_time=10.0)
    now[0] += 4.0
    assert curve(first, 1)[-1] == pytest.approx(PEAK * 0.6)
    state = first.state_dict()
    assert state["elapsed"] == pytest.approx(4.0) and "_clock" not in state
    now[0] = 5.0  # a new process: its monotonic clock has another origin
    second = BudgetScheduler(optimizer(), max_time=10.0)
    second.load_state_dict(state)
    now[0] += 3.0
    assert curve(second, 1)[-1] == pytest.approx(PEAK * 0.3)


# -- under a Trainer ------------------------------------------------------------------------------
class Tiny(BaseTask):
    """A linear classifier on random vectors, recording the rate each training batch used."""

    def __init__(self, lr_scheduler) -> None:
        super().__init__(2, optimizer=lambda p: torch.optim.SGD(p, lr=PEAK), lr_scheduler=lr_scheduler)
        self.lrs: list[float] = []

    def build_model(self) -> None:
        self.net = nn.Linear(4, 2)

    def build_metrics(self) -> MeanMetric:
        return MeanMetric()  # unused: validation_step logs its loss directly

    def on_validation_epoch_end(self) -> None:
        pass

    def training_step(self, batch, batch_idx):
        self.lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", F.cross_entropy(self.net(x), y))

    def train_dataloader(self):  # 8 batches per epoch
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(64, 4, generator=g), torch.randint(0, 2, (64,), generator=g)
        return DataLoader(TensorDataset(x, y), batch_size=8)

    def val_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(16, 4), torch.randint(0, 2, (16,))), batch_size=8)


def trainer(tmp_path: Path, **kw) -> pl.Trainer:
    args = dict(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, default_root_dir=str(tmp_path), limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    args.update(kw)
    return pl.Trainer(**args)


def final_lr(t: pl.Trainer) -> float:
    return t.optimizers[0].param_groups[0]["lr"]


def test_trainer_step_budget_and_per_batch_stepping(tmp_path: Path) -> None:
    model = Tiny(partial(BudgetScheduler, schedule="cosine", warmup=0.25))
    t = trainer(tmp_path, max_epochs=3)  # 3 x 8 batches: the budget is 24 steps
    t.fit(model)
    assert t.lr_scheduler_configs[0].interval == "step"
    assert t.lr_scheduler_configs[0].scheduler.max_steps == 24
    assert model.lrs == pytest.approx([expected(i, 24, "cosine", 0.25, 0.0) for i in range(24)])
    assert final_lr(t) == pytest.approx(0.0, abs=1e-12)


class StopAfterFirstEpoch(pl.Callback):
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.should_stop = True


def test_resume_from_a_checkpoint_continues_the_schedule(tmp_path: Path) -> None:
    first = Tiny(partial(BudgetScheduler, warmup=3))
    t = trainer(tmp_path, max_epochs=3, callbacks=[StopAfterFirstEpoch()])
    t.fit(first)
    assert t.global_step == 8
    t.save_checkpoint(tmp_path / "interrupted.ckpt")
    second = Tiny(partial(BudgetScheduler, warmup=3))
    t2 = trainer(tmp_path, max_epochs=3)
    t2.fit(second, ckpt_path=tmp_path / "interrupted.ckpt")
    assert t2.global_step == 24
    assert first.lrs + second.lrs == pytest.approx([expected(i, 24, "linear", 3, 0.0) for i in range(24)])
    assert final_lr(t2) == pytest.approx(0.0, abs=1e-12)


class FakeTime:
    """Stands in for the ``time`` module inside Lightning's Timer; ticks only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


class Tick(pl.Callback):
    def __init__(self, clock: FakeTime, train_s: float, val_s: float = 0.0) -> None:
        self.clock, self.train_s, self.val_s = clock, train_s, val_s

    def on_train_batch_start(self, *args) -> None:
        self.clock.now += self.train_s

    def on_validation_batch_start(self, *args) -> None:
        self.clock.now += self.val_s


def test_max_time_run_anneals_to_zero_at_the_deadline(tmp_path: Path, monkeypatch) -> None:
    clock = FakeTime()
    monkeypatch.setattr(timer_module, "time", clock)
    model = Tiny(partial(BudgetScheduler))
    t = trainer(tmp_path, max_epochs=100, max_time={"seconds": 10}, callbacks=[Tick(clock, 1.0)])
    t.fit(model)
    assert t.lr_scheduler_configs[0].scheduler.max_time == 10.0
    assert t.global_step == 10  # the Timer stopped it at 10 s, far inside the 800-step budget
    assert model.lrs == pytest.approx([PEAK * (1 - i / 10) for i in range(10)])
    assert final_lr(t) == pytest.approx(0.0, abs=1e-12)


def test_time_spent_in_validation_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeTime()
    monkeypatch.setattr(timer_module, "time", clock)
    model = Tiny(partial(BudgetScheduler))
    t = trainer(
        tmp_path, max_epochs=100, max_time={"seconds": 10}, limit_val_batches=2, val_check_interval=4,
        callbacks=[Tick(clock, 1.0, val_s=0.5)],
    )
    t.fit(model)
    assert t.global_step == 9  # 9 batches + 2 validations of 1 s reach 10 s
    assert model.lrs[5] == pytest.approx(PEAK * (1 - 6 / 10))  # after batch 4: 5 s + 1 s validation
    assert final_lr(t) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.slow
def test_cli_fit_ends_at_the_floor(tmp_path: Path) -> None:
    """The demo config with the scheduler from a small YAML: after the 20-step budget the rate is at
    the floor. (No validation, so that last.ckpt is written at the end of training.)"""
    scheduler = tmp_path / "budget.yaml"
    scheduler.write_text(
        "class_path: visiontasks.schedulers.BudgetScheduler\n"
        "init_args: {schedule: linear, warmup: 0.2, min_lr_ratio: 0.05}\n"
    )
    args = [
        "fit", "--config", str(DEMO), "--trainer.default_root_dir", str(tmp_path),
        "--model.init_args.lr_scheduler", str(scheduler), "--trainer.max_steps", "20",
        "--trainer.limit_train_batches", "6", "--trainer.limit_val_batches", "0",
        "--trainer.enable_progress_bar", "false",
    ]
    assert cli_main(args) == 0
    last = tmp_path / "lenet5_digits" / "version_0" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=False)
    assert ckpt["global_step"] == 20
    state = ckpt["lr_schedulers"][0]
    assert state["last_epoch"] == 20 and state["base_lrs"] == [0.003]
    assert ckpt["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.003 * 0.05)
