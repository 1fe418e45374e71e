"""Where a run lands: ``precision: auto`` resolves by the one rule of :mod:`visiontasks.trainer`, the
CLI builds that trainer, and batches go to CUDA with non-blocking copies (Lightning's own transfer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from visiontasks.trainer import VisionTrainer, resolve_precision

ROOT = Path(__file__).resolve().parents[1]


def _cuda(monkeypatch: pytest.MonkeyPatch, available: bool, bf16: bool = False) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)


@pytest.mark.parametrize(
    ("available", "bf16", "accelerator", "expected"),
    [
        (True, True, "auto", "bf16-mixed"),
        (True, True, "gpu", "bf16-mixed"),
        (True, True, "cuda", "bf16-mixed"),
        (True, False, "auto", "16-mixed"),  # e.g. a V100 or T4: no bfloat16
        (True, False, "gpu", "16-mixed"),
        (True, True, "cpu", "32-true"),  # a GPU machine told to run on the CPU
        (False, False, "auto", "32-true"),
        (False, False, "mps", "32-true"),
    ],
)
def test_auto_precision_follows_the_rule(monkeypatch: pytest.MonkeyPatch, available: bool, bf16: bool,
                                         accelerator: str, expected: str) -> None:
    _cuda(monkeypatch, available, bf16)
    assert resolve_precision("auto", accelerator) == expected


@pytest.mark.parametrize("given", ["32-true", "16-mixed", "bf16-mixed", 16, None])
def test_an_explicit_precision_wins(monkeypatch: pytest.MonkeyPatch, given: Any) -> None:
    _cuda(monkeypatch, True, True)
    assert resolve_precision(given, "auto") == given


def test_trainer_resolves_auto_on_this_machine() -> None:
    """On the CPU ``auto`` is full precision; an explicit value reaches Lightning as given."""
    quiet = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                 enable_progress_bar=False, enable_model_summary=False)
    assert VisionTrainer(**quiet).precision == "32-true"
    assert VisionTrainer(precision="bf16-mixed", **quiet).precision == "bf16-mixed"


def test_cli_builds_the_auto_precision_trainer(tmp_path: Path) -> None:
    from visiontasks.cli import build_cli

    args = ["--config", str(ROOT / "configs/classification/lenet5_digits.yaml"),
            "--trainer.default_root_dir", str(tmp_path), "--trainer.logger", "false"]
    cli = build_cli(args, run=False)
    assert isinstance(cli.trainer, VisionTrainer)
    assert cli.trainer.precision == ("32-true" if not torch.cuda.is_available() else resolve_precision("auto"))
    cli = build_cli([*args, "--trainer.precision", "bf16-mixed"], run=False)
    assert cli.trainer.precision == "bf16-mixed"


def test_batches_go_to_cuda_without_blocking(monkeypatch: pytest.MonkeyPatch) -> None:
    """No task overrides Lightning's ``transfer_batch_to_device``, whose copies to a CUDA device are
    ``non_blocking`` (overlapping the pinned-memory copy with compute); to the CPU they block."""
    from visiontasks.tasks import ClassificationTask, DetectionTask, SegmentationTask
    from visiontasks.tasks.base import BaseTask

    for task in (ClassificationTask, DetectionTask, SegmentationTask, BaseTask):
        assert "transfer_batch_to_device" not in vars(task), task
    calls: list[dict[str, Any]] = []

    def fake_to(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(kwargs)
        return self

    monkeypatch.setattr(torch.Tensor, "to", fake_to)
    task = ClassificationTask("lenet5", 10, in_chans=1)
    detection_batch = ([torch.zeros(3, 8, 8)], [{"boxes": torch.zeros(1, 4), "labels": torch.zeros(1), "path": "a"}])
    task.transfer_batch_to_device(detection_batch, torch.device("cuda", 0), 0)
    assert len(calls) == 3 and all(c.get("non_blocking") is True for c in calls)
    calls.clear()
    task.transfer_batch_to_device({"image": torch.zeros(1, 1, 8, 8), "id": ["a"]}, torch.device("cpu"), 0)
    assert calls and not any(c.get("non_blocking") for c in calls)
