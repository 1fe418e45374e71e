"""A task declares its facets: a toy task defined here only (no line of ``visiontasks/`` knows it)
trains and predicts through the real CLI, predicts through ``load_model``, exports and writes its own
outputs, each layer reading the toy's declarations (family, result type, prediction data, output
callbacks, export wrapper) instead of a table of tasks."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from unittest import mock

import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image
from torch import Tensor, nn
from torchmetrics import MeanMetric

from visiontasks import load_model
from visiontasks.cli import main
from visiontasks.export import export_checkpoint
from visiontasks.export.wrappers import ClassifierExport
from visiontasks.outputs import default_callbacks
from visiontasks.results import Result
from visiontasks.tasks import BaseTask

ROOT = Path(__file__).resolve().parents[1]
HERE = __name__  # the import path of this module: the toy's facets name its classes by it


@dataclass(repr=False)
class BrightnessResult(Result):
    """The toy's result: ``brightness`` in [0, 1] of one image."""

    brightness: float = 0.0

    @classmethod
    def from_prediction(cls, prediction: dict[str, Any], class_names: list[str], image_input: Any) -> BrightnessResult:
        return cls(str(prediction["id"]), class_names, image_input, brightness=float(prediction["brightness"]))


class BrightnessWriter(BasePredictionWriter):
    """``<output_dir>/brightness.json``: ``{id: brightness}`` of every image predicted."""

    def __init__(self, output_dir: str | None = None) -> None:
        super().__init__("batch")
        self.output_dir = output_dir
        self.rows: dict[str, float] = {}

    def write_on_batch_end(self, trainer: Any, pl_module: Any, prediction: Sequence[dict[str, Any]], *args: Any) -> None:
        self.rows.update({p["id"]: float(p["brightness"]) for p in prediction})
        folder = Path(self.output_dir or Path(trainer.default_root_dir) / "predictions")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "brightness.json").write_text(json.dumps(self.rows))


def brightness_callbacks() -> list[BrightnessWriter]:
    return [BrightnessWriter()]


class BrightnessExport(ClassifierExport):
    """The toy's network exported as the classifier's (``logits``, ``probs``), named its own way."""

    @classmethod
    def model_name(cls, task: Any) -> str:
        return "brightness net"


class BrightnessTask(BaseTask):
    """Regress an image's mean brightness on classification batches (labels ignored)."""

    family = "brightness"
    result_type = f"{HERE}.BrightnessResult"
    prediction_data = "visiontasks.data.classification.dataset"
    output_callbacks = f"{HERE}.brightness_callbacks"
    export_wrapper = f"{HERE}.BrightnessExport"

    def __init__(self, num_classes: int = 10, **kwargs: Any) -> None:
        super().__init__(num_classes, **kwargs)

    def build_model(self) -> None:
        self.model = nn.Sequential(nn.Conv2d(self.hparams.in_chans, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1),
                                   nn.Flatten(), nn.Linear(4, 1))

    def build_metrics(self) -> MeanMetric:
        return MeanMetric()

    def _loss(self, batch: dict[str, Any]) -> Tensor:
        target = batch["image"].mean((1, 2, 3))
        return nn.functional.mse_loss(self.model(batch["image"])[:, 0], target)

    def training_loss(self, batch: dict[str, Any]) -> Tensor:
        return self._loss(batch)

    def update_metrics(self, metrics: MeanMetric, batch: dict[str, Any]) -> Tensor:
        loss = self._loss(batch)
        metrics.update(loss)
        return loss

    def results_to_log(self, results: Tensor, stage: str) -> dict[str, Tensor]:
        return {f"{stage}/mse": results}

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        """Per image ``{"id": str, "brightness": float}``."""
        values = self.model(batch["image"])[:, 0].float().cpu().tolist()
        return [{"id": str(key), "brightness": v} for key, v in zip(batch["id"], values)]


def test_the_toy_task_is_registered_by_its_import_path() -> None:
    assert BaseTask.registry[f"{HERE}.BrightnessTask"] is BrightnessTask
    assert [type(c) for c in default_callbacks(BrightnessTask(in_chans=1))] == [BrightnessWriter]


def test_grep_finds_no_family_branches() -> None:
    found = subprocess.run(["grep", "-rn", "family ==", str(ROOT / "visiontasks")], capture_output=True, text=True)
    assert found.stdout == ""


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(checkpoint, photos folder)`` of a toy run fitted by ``visiontasks fit`` (one short epoch)."""
    root = tmp_path_factory.mktemp("toy")
    config = {
        "seed_everything": 0,
        "model": {"class_path": f"{HERE}.BrightnessTask", "init_args": {"backbone": "lenet5", "in_chans": 1}},
        "data": {"class_path": "visiontasks.data.ClassificationDataModule", "init_args": {
            "source": "digits", "image_size": 28, "in_chans": 1, "batch_size": 32, "num_workers": 0,
            "root": str(root / "data")}},
        "trainer": {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1, "limit_test_batches": 1,
                    "accelerator": "cpu", "devices": 1, "enable_progress_bar": False, "logger": False,
                    "default_root_dir": str(root / "runs")},
    }
    (root / "toy.yaml").write_text(yaml.safe_dump(config))
    with mock.patch.object(sys, "argv", ["visiontasks"]):
        assert main(["fit", "--config", str(root / "toy.yaml")]) == 0
    ckpts = sorted((root / "runs").rglob("last.ckpt"))
    assert ckpts, sorted(str(p) for p in (root / "runs").rglob("*"))
    photos = root / "photos"
    photos.mkdir()
    for i, value in enumerate((20, 128, 240)):
        Image.fromarray(np.full((28, 28), value, np.uint8)).save(photos / f"p{i}.png")
    return ckpts[0], photos


def test_the_toy_predicts_through_load_model(fitted: tuple[Path, Path]) -> None:
    ckpt, photos = fitted
    model = load_model(ckpt, device="cpu")
    assert model.family == "brightness" and isinstance(model.task, BrightnessTask)
    results = model.predict(photos, batch_size=2)
    assert [type(r) for r in results] == [BrightnessResult] * 3
    assert [Path(r.source).name for r in results] == ["p0.png", "p1.png", "p2.png"]
    expected = model.task.predict_step(next(iter(model.datamodule(photos, 3).loader("predict"))), 0)
    assert [r.brightness for r in results] == pytest.approx([p["brightness"] for p in expected], abs=1e-5)


def test_the_toy_predicts_and_writes_through_the_cli(fitted: tuple[Path, Path], tmp_path: Path) -> None:
    ckpt, photos = fitted
    out = tmp_path / "out"
    assert main(["predict", "--ckpt_path", str(ckpt), "--source", str(photos), "--output", str(out),
                 "--device", "cpu"]) == 0
    written = json.loads((out / "brightness.json").read_text())
    by_load_model = {r.source: r.brightness for r in load_model(ckpt, device="cpu").predict(photos)}
    assert written == pytest.approx(by_load_model, abs=1e-5)


def test_the_toy_exports_through_its_wrapper(fitted: tuple[Path, Path], tmp_path: Path) -> None:
    ckpt, _ = fitted
    done = export_checkpoint(ckpt, "onnx", tmp_path / "toy.onnx")
    assert done.spec["task"] == "brightness" and done.spec["model"] == "brightness net"
    assert [o["name"] for o in done.spec["outputs"]] == ["logits", "probs"]
    assert done.spec["input"]["batch"] == "any"
    import onnxruntime as ort

    image = np.zeros((2, 28, 28, 1), np.uint8)
    logits, _ = ort.InferenceSession(str(done.path), providers=["CPUExecutionProvider"]).run(None, {"image": image})
    task = load_model(ckpt, device="cpu").task
    with torch.no_grad():
        expected = BrightnessExport.for_task(task, task.preprocessing)(torch.from_numpy(image))[0]
    assert np.allclose(logits, expected.numpy(), atol=1e-4)
