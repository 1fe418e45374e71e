"""The CLI's trainer: the config's own callbacks are kept beside the ones the CLI adds."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import LearningRateMonitor

from visiontasks.cli import build_cli
from visiontasks.outputs import BestAndLastCheckpoint

ROOT = Path(__file__).resolve().parents[1]


def test_config_callbacks_are_kept(tmp_path: Path) -> None:
    cli = build_cli(["--config", str(ROOT / "configs/classification/lenet5_digits.yaml"),
                     "--trainer.default_root_dir", str(tmp_path),
                     "--trainer.callbacks+=LearningRateMonitor"], run=False)
    kinds = [type(c) for c in cli.trainer.callbacks]
    assert LearningRateMonitor in kinds  # was dropped: passing `callbacks` replaced the config's list
    assert BestAndLastCheckpoint in kinds
