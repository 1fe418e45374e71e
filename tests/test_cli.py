"""The CLI's trainer: the config's own callbacks are kept beside the ones the CLI adds; ``visiontasks
demo`` from an installed package, in a folder outside the checkout, and its own ``--help``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from lightning.pytorch.callbacks import LearningRateMonitor

from visiontasks.cli import build_cli
from visiontasks.cli import main as cli_main
from visiontasks.commands import demo
from visiontasks.outputs import BestAndLastCheckpoint

ROOT = Path(__file__).resolve().parents[1]


def test_config_callbacks_are_kept(tmp_path: Path) -> None:
    cli = build_cli(["--config", str(ROOT / "configs/classification/lenet5_digits.yaml"),
                     "--trainer.default_root_dir", str(tmp_path),
                     "--trainer.callbacks+=LearningRateMonitor"], run=False)
    kinds = [type(c) for c in cli.trainer.callbacks]
    assert LearningRateMonitor in kinds  # was dropped: passing `callbacks` replaced the config's list
    assert BestAndLastCheckpoint in kinds


def test_checkpointing_off_adds_no_checkpoint(tmp_path: Path) -> None:
    """``enable_checkpointing: false`` is obeyed (the CLI's own checkpoint made Lightning refuse the config)."""
    cli = build_cli(["--config", str(ROOT / "configs/classification/lenet5_digits.yaml"),
                     "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_checkpointing", "false"], run=False)
    assert not any(isinstance(c, BestAndLastCheckpoint) for c in cli.trainer.callbacks)
    assert cli.trainer.checkpoint_callback is None


# -- visiontasks demo --------------------------------------------------------------------------------
def test_demo_help_is_the_demo_s(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli_main(["demo", "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: visiontasks demo")  # was fit's LightningCLI usage
    assert "--epochs" in out and "--output" in out
    assert "--ckpt_path" not in out and "--seed_everything" not in out


def test_demo_config_is_the_checkout_s() -> None:
    """The config shipped in the package keeps the settings of configs/classification/lenet5_digits.yaml."""
    shipped = yaml.safe_load(demo.demo_config().read_text())
    assert shipped == yaml.safe_load((ROOT / "configs/classification/lenet5_digits.yaml").read_text())


def test_demo_rejects_zero_epochs(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["demo", "--epochs", "0"]) == 2
    assert capsys.readouterr().err.strip() == "visiontasks demo: error: --epochs must be at least 1, got 0"


SHORT_RUN = ["--epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
             "--trainer.limit_test_batches", "2", "--data.init_args.num_workers", "0",
             "--trainer.enable_progress_bar", "false"]


def test_demo_runs_in_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """In-process, from a working directory outside the checkout: the run folder lands there."""
    monkeypatch.chdir(tmp_path)
    assert cli_main(["demo", *SHORT_RUN]) == 0
    assert "LeNet-5 on scikit-learn digits: test accuracy" in capsys.readouterr().out
    summary = json.loads((tmp_path / "runs/lenet5_digits/version_0/demo_summary.json").read_text())
    assert (tmp_path / summary["best_checkpoint"]).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


def _install_wheel(tmp_path: Path) -> tuple[Path, str]:
    """Build the package's wheel (from a copy of the sources, so the checkout gets no build/) and
    unpack it into a site folder; returns the folder and the ``visiontasks`` console script's target."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "visiontasks", src / "visiontasks", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(tmp_path / "wheel"), str(src)], check=True, capture_output=True)
    site = tmp_path / "site"
    with zipfile.ZipFile(next((tmp_path / "wheel").glob("visiontasks-*.whl"))) as whl:
        whl.extractall(site)
    entry = next(site.glob("visiontasks-*.dist-info/entry_points.txt")).read_text()
    target = next(line.split("=", 1)[1].strip() for line in entry.splitlines() if line.startswith("visiontasks ="))
    return site, target


@pytest.mark.slow  # a wheel build and a fresh interpreter importing torch and Lightning
def test_demo_runs_from_an_installed_package(tmp_path: Path) -> None:
    """The wheel's ``visiontasks demo`` in a folder outside the checkout, the package imported from the
    unpacked wheel (no configs/ beside it): a short run (1 epoch, a few batches) that writes its run
    folder under the working directory and nothing else there."""
    site, target = _install_wheel(tmp_path)
    module, func = target.split(":")
    script = (f"import sys, visiontasks; print('package:', visiontasks.__file__, file=sys.stderr)\n"
              f"from {module} import {func}; sys.exit({func}())")  # what the console script runs
    work = tmp_path / "work"
    work.mkdir()
    args = ["demo", *SHORT_RUN]
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run([sys.executable, "-c", script, *args], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"package: {site / 'visiontasks' / '__init__.py'}" in proc.stderr  # not the checkout's
    assert "LeNet-5 on scikit-learn digits: test accuracy" in proc.stdout
    run = work / "runs" / "lenet5_digits" / "version_0"
    summary = json.loads((run / "demo_summary.json").read_text())
    assert (work / summary["best_checkpoint"]).is_file()
    assert (work / summary["metrics_csv"]).is_file()
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert sorted(p.name for p in work.iterdir()) == ["runs"]
