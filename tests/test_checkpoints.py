"""``last.ckpt`` holds where training stopped, ``best-*.ckpt`` the monitored metric's best (issue 14).

Every run goes through the real entry point with ``lr 0``: the weights never change, so after the
first validation the metric never improves (the case where Lightning's own ``save_last`` left
``last.ckpt`` at the best epoch) and an interrupted-then-resumed run must match an uninterrupted one.
Each check runs for a classification task (LeNet-5 on digits) and a detection task (YOLOv1 on a tiny
synthetic set); both get their checkpoint callback from the CLI.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Timer

from visiontasks.cli import _resolve_checkpoint
from visiontasks.cli import main as cli_main
from visiontasks.outputs import BestAndLastCheckpoint

ROOT = Path(__file__).resolve().parents[1]
BATCHES = 3  # training batches per epoch in every run here
EPOCHS = 3  # of the uninterrupted run


@dataclass
class Task:
    name: str  # run folder name (the config's stem)
    args: list[str]  # config and overrides shared by all runs of the task

    def fit(self, root: Path, *extra: str) -> list[str]:
        return ["fit", *self.args, "--trainer.default_root_dir", str(root), *extra]

    def ckpt_dir(self, root: Path) -> Path:
        return root / self.name / "version_0" / "checkpoints"


COMMON = [
    "--model.init_args.optimizer.init_args.lr", "0",
    "--trainer.limit_train_batches", str(BATCHES), "--trainer.limit_val_batches", "1",
    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    "--trainer.log_every_n_steps", "1", "--trainer.num_sanity_val_steps", "0",
]


def _classification(tmp: Path) -> Task:
    config = ROOT / "configs" / "classification" / "lenet5_digits.yaml"
    return Task("lenet5_digits", ["--config", str(config), *COMMON, "--data.init_args.batch_size", "16"])


def _detection(tmp: Path) -> Task:
    cfg = yaml.safe_load((ROOT / "configs" / "detection" / "yolov1_resnet18_shapes.yaml").read_text())
    data = cfg["data"]["init_args"]
    data.update(root=str(tmp / "data"), image_size=64, batch_size=2, eval_batch_size=2)
    data["synthetic"].update(splits={"train": 2 * BATCHES, "val": 2}, image_size=64)
    cfg["trainer"].pop("max_time", None)
    path = tmp / "yolov1_tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return Task("yolov1_tiny", ["--config", str(path), *COMMON])


@pytest.fixture(scope="module", params=["classification", pytest.param("detection", marks=pytest.mark.slow)])
def task(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Task:
    make = _classification if request.param == "classification" else _detection
    return make(tmp_path_factory.mktemp(request.param))


def _load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


def _state(ckpt: dict[str, Any]) -> dict[str, Any]:
    (key,) = [k for k in ckpt["callbacks"] if k.startswith("ModelCheckpoint")]  # what --ckpt_path best reads
    return ckpt["callbacks"][key]


def _optimizer_steps(ckpt: dict[str, Any]) -> int:
    """Updates the (Adam-family) optimizer has applied: its per-parameter step count."""
    return int(next(iter(ckpt["optimizer_states"][0]["state"].values()))["step"])


@pytest.fixture(scope="module")
def uninterrupted(task: Task, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a plain ``EPOCHS``-epoch fit of ``task`` (the issue's reproduction)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    assert cli_main(task.fit(root, "--trainer.max_epochs", str(EPOCHS))) == 0
    return root


def test_last_is_the_final_epoch_when_the_metric_stops_improving(task: Task, uninterrupted: Path) -> None:
    """The issue's reproduction: 3 epochs, nothing improves after the first -> last.ckpt at epoch 2."""
    folder = task.ckpt_dir(uninterrupted)
    last = _load(folder / "last.ckpt")
    assert (last["epoch"], last["global_step"]) == (EPOCHS - 1, EPOCHS * BATCHES)
    assert _optimizer_steps(last) == EPOCHS * BATCHES
    assert not list(folder.glob("*.part")) and not list(folder.glob("last-v*.ckpt"))
    best = Path(_state(last)["best_model_path"])
    assert best.parent == folder and best.name.startswith("best-epoch") and best.is_file()
    if task.name == "lenet5_digits":  # no batch norm: the weights and so the metric stay put
        assert best.name == f"best-epoch0-step{BATCHES}.ckpt"
    # --ckpt_path last / best (validate, test, predict, resume) find these two files
    assert _resolve_checkpoint(uninterrupted / task.name, "last") == ("version_0", str(folder / "last.ckpt"))
    assert _resolve_checkpoint(uninterrupted / task.name, "best") == ("version_0", str(best))


def test_last_is_where_max_time_stopped_mid_epoch(task: Task, tmp_path: Path, monkeypatch) -> None:
    """Lightning's Timer stops the run 2 batches into its second epoch (a fake clock says when)."""
    stop = BATCHES + 2
    check = Timer._check_time_remaining

    def clock(self: Timer, trainer) -> None:  # the time is up once `stop` steps are done
        self._offset = 10**6 if trainer.global_step >= stop else 0
        check(self, trainer)

    monkeypatch.setattr(Timer, "_check_time_remaining", clock)
    args = task.fit(tmp_path, "--trainer.max_epochs", "10", "--trainer.max_time", "00:01:00:00")
    assert cli_main(args) == 0
    last = _load(task.ckpt_dir(tmp_path) / "last.ckpt")
    assert (last["epoch"], last["global_step"]) == (1, stop)
    assert _optimizer_steps(last) == stop


def test_last_is_the_final_epoch_between_validations(task: Task, tmp_path: Path) -> None:
    """Validation every 3rd epoch of 4: best is the epoch-2 model, last the epoch-3 one."""
    args = task.fit(tmp_path, "--trainer.max_epochs", "4", "--trainer.check_val_every_n_epoch", "3")
    if task.name == "lenet5_digits":  # its ReduceLROnPlateau needs val/acc after every epoch
        args += ["--model.init_args.lr_scheduler", "null"]
    assert cli_main(args) == 0
    folder = task.ckpt_dir(tmp_path)
    last = _load(folder / "last.ckpt")
    assert (last["epoch"], last["global_step"]) == (3, 4 * BATCHES)
    best = f"best-epoch2-step{3 * BATCHES}.ckpt"
    assert Path(_state(last)["best_model_path"]).name == best
    assert sorted(p.name for p in folder.glob("*.ckpt")) == [best, "last.ckpt"]


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_ctrl_c_writes_last_and_a_crash_keeps_the_last_epoch(error: type, tmp_path: Path,
                                                             monkeypatch) -> None:
    """Ctrl-C two batches into the second epoch saves that point; a crash there keeps last.ckpt at the
    end of the first epoch (the failing step may have left the weights broken)."""
    task = _classification(tmp_path)
    stop = BATCHES + 2
    batch_end = BestAndLastCheckpoint.on_train_batch_end

    def interrupt(self, trainer, *args) -> None:
        batch_end(self, trainer, *args)
        if trainer.global_step == stop:
            raise error("stop here")

    monkeypatch.setattr(BestAndLastCheckpoint, "on_train_batch_end", interrupt)
    # Lightning turns Ctrl-C into exit status 1 after its on_exception hooks; other errors propagate
    sigint = signal.getsignal(signal.SIGINT)  # Lightning ignores further Ctrl-C while it shuts down
    try:
        with pytest.raises(SystemExit if error is KeyboardInterrupt else error):
            cli_main(task.fit(tmp_path, "--trainer.max_epochs", "5"))
    finally:
        signal.signal(signal.SIGINT, sigint)
    last = _load(task.ckpt_dir(tmp_path) / "last.ckpt")
    expected = (1, stop) if error is KeyboardInterrupt else (0, BATCHES)
    assert (last["epoch"], last["global_step"]) == expected


@pytest.mark.slow
def test_sigkilled_fit_resumes_from_last_and_matches_an_uninterrupted_run(
    task: Task, uninterrupted: Path, tmp_path: Path, monkeypatch
) -> None:
    killed_root = tmp_path / "killed"
    last_path = task.ckpt_dir(killed_root) / "last.ckpt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    log = (tmp_path / "child.log").open("w")
    command = [sys.executable, "-m", "visiontasks.cli", *task.fit(killed_root, "--trainer.max_epochs", "1000")]
    child = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while True:  # kill once an epoch is complete (last.ckpt is replaced atomically: always readable)
            assert child.poll() is None, (tmp_path / "child.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the child never completed an epoch"
            if last_path.is_file():
                break
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        log.close()
    killed = _load(last_path)
    n = killed["epoch"] + 1  # completed epochs
    assert killed["global_step"] == n * BATCHES
    assert n < EPOCHS, f"killed after {n} epochs, too late to compare with the {EPOCHS}-epoch run"

    seen: list[tuple[int, int]] = []
    start = BestAndLastCheckpoint.on_train_start

    def record(self, trainer, pl_module) -> None:
        start(self, trainer, pl_module)
        seen.append((trainer.current_epoch, trainer.global_step))

    monkeypatch.setattr(BestAndLastCheckpoint, "on_train_start", record)
    assert cli_main(task.fit(killed_root, "--trainer.max_epochs", str(EPOCHS), "--ckpt_path", "last")) == 0
    assert seen == [(n, n * BATCHES)]  # resumed at the next epoch with the killed run's step count
    assert not (killed_root / task.name / "version_1").exists()  # same run folder, earlier metrics kept
    assert list((killed_root / task.name / "version_0").glob("metrics.part*.csv"))

    resumed, whole = _load(last_path), _load(task.ckpt_dir(uninterrupted) / "last.ckpt")
    assert (resumed["epoch"], resumed["global_step"]) == (whole["epoch"], whole["global_step"])
    assert _optimizer_steps(resumed) == _optimizer_steps(whole) == EPOCHS * BATCHES
    # scheduler state as if never interrupted (ReduceLROnPlateau included: same epochs seen, same lr)
    assert resumed["lr_schedulers"] == whole["lr_schedulers"]
    assert [g["lr"] for g in resumed["optimizer_states"][0]["param_groups"]] == [
        g["lr"] for g in whole["optimizer_states"][0]["param_groups"]]
