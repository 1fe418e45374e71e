"""Output callbacks: chosen by task type, attached by the CLI without duplicating a configured one,
and the segmentation writer's masks at the size of the image file."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule
from PIL import Image

from visiontasks.outputs import (
    ClassificationPredictionWriter,
    CAMWriter,
    CocoResultsWriter,
    ConfusionMatrixPlot,
    DetectionDiagnosticsWriter,
    DetectionDrawingWriter,
    IoUTableWriter,
    MetricsJSONWriter,
    SegmentationMaskWriter,
    default_callbacks,
)
from visiontasks.tasks import ClassificationTask, DetectionTask, SegmentationTask

ROOT = Path(__file__).resolve().parents[1]


def _types(callbacks) -> set[type]:
    return {type(c) for c in callbacks}


def test_default_callbacks_follow_the_task_type() -> None:
    clf = ClassificationTask("lenet5", 10, in_chans=1)
    assert _types(default_callbacks(clf)) == {ClassificationPredictionWriter, CAMWriter, ConfusionMatrixPlot,
                                             MetricsJSONWriter}  # CAMWriter writes only under --cam true
    seg = SegmentationTask("fcn32s", "resnet18", num_classes=3, fc_channels=0)
    assert _types(default_callbacks(seg)) == {SegmentationMaskWriter, IoUTableWriter}
    det = DetectionTask("yolov1", "resnet18", num_classes=2)
    assert _types(default_callbacks(det)) == {CocoResultsWriter, DetectionDrawingWriter, DetectionDiagnosticsWriter}
    assert next(c for c in default_callbacks(det) if isinstance(c, DetectionDrawingWriter)).draw_score_thresh == 0.5

    class MyTask(ClassificationTask):
        pass

    assert _types(default_callbacks(MyTask("lenet5", 10, in_chans=1))) == _types(default_callbacks(clf))
    assert default_callbacks(LightningModule()) == []
    assert default_callbacks(clf)[0] is not default_callbacks(clf)[0]  # fresh instances


def test_cli_attaches_defaults_once_and_keeps_a_configured_one(tmp_path: Path, monkeypatch) -> None:
    import sys

    from visiontasks.cli import build_cli

    monkeypatch.setattr(sys, "argv", ["visiontasks"])
    given = str(tmp_path / "mine")
    cli = build_cli([
        "--config", str(ROOT / "configs" / "classification" / "lenet5_digits.yaml"),
        "--trainer.default_root_dir", str(tmp_path),
        "--trainer.callbacks+=visiontasks.outputs.ClassificationPredictionWriter",
        f"--trainer.callbacks.output_dir={given}",
    ], run=False)  # fmt: skip
    callbacks = cli.trainer.callbacks
    writers = [c for c in callbacks if isinstance(c, ClassificationPredictionWriter)]
    assert len(writers) == 1 and str(writers[0].output_dir) == given  # the configured one, not a default
    assert sum(isinstance(c, ConfusionMatrixPlot) for c in callbacks) == 1
    assert sum(isinstance(c, MetricsJSONWriter) for c in callbacks) == 1


def test_segmentation_predict_and_writer_give_masks_at_the_file_size(tmp_path: Path) -> None:
    task = SegmentationTask("fcn32s", "resnet18", num_classes=3, fc_channels=0).eval()
    task.class_names = ["background", "circle", "square"]
    images = []
    for name, (h, w) in {"a": (45, 37), "b": (30, 52)}.items():
        path = tmp_path / f"{name}.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        images.append(path)
    # the model saw both at 32 x 32 (padded to 40 x 40); the batch knows the files' sizes
    batch = {"image": torch.randn(2, 3, 40, 40), "id": [str(p) for p in images], "size": [(32, 32), (32, 32)],
             "orig_size": [(45, 37), (30, 52)]}
    with torch.no_grad():
        preds = task.predict_step(batch, 0)
        no_orig = task.predict_step({k: v for k, v in batch.items() if k != "orig_size"}, 0)
    assert [tuple(p["mask"].shape) for p in preds] == [(45, 37), (30, 52)]
    assert [tuple(p["mask"].shape) for p in no_orig] == [(32, 32), (32, 32)]
    assert all(p["mask"].dtype == torch.int64 for p in preds)

    writer = SegmentationMaskWriter(overlay_alpha=0.7, output_dir=tmp_path / "out")
    # without orig_size the writer resizes to the file it reads for the overlay
    writer.write_on_batch_end(None, task, no_orig, None, batch, 0, 0)  # type: ignore[arg-type]
    for path in images:
        with Image.open(tmp_path / "out" / f"{path.stem}_mask.png") as m, Image.open(path) as im:
            assert m.size == im.size and m.mode == "P" and np.asarray(m).max() < 3
        with Image.open(tmp_path / "out" / f"{path.stem}_overlay.png") as o, Image.open(path) as im:
            assert o.size == im.size and o.mode == "RGB"


@pytest.mark.parametrize("path", sorted((ROOT / "visiontasks" / "tasks").glob("*.py")), ids=lambda p: p.name)
def test_task_modules_are_short_and_do_not_import_data(path: Path) -> None:
    text = path.read_text()
    assert len(text.splitlines()) <= 160
    modules = [
        node.module or "" for node in ast.walk(ast.parse(text)) if isinstance(node, ast.ImportFrom)
    ] + [a.name for node in ast.walk(ast.parse(text)) if isinstance(node, ast.Import) for a in node.names]
    assert not [m for m in modules if m.startswith("visiontasks.data") or m.startswith("visiontasks.outputs")]
