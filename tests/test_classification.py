"""ClassificationDataModule and ClassificationTask: contracts, bad input, learning, CLI, bf16, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image

from visiontasks.cli import main as cli_main
from visiontasks.data import ClassificationDataModule
from visiontasks.data.io import ImageReadError
from visiontasks.tasks import ClassificationTask

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "classification" / "lenet5_digits.yaml"


def quiet_trainer(tmp_path: Path, **kw) -> pl.Trainer:
    defaults = dict(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, default_root_dir=str(tmp_path),
    )
    defaults.update(kw)
    return pl.Trainer(**defaults)


def make_folder(root: Path, classes=("cat", "dog"), n=6, size=20) -> None:
    rng = np.random.default_rng(0)
    modes = ["RGB", "L", "RGBA", "P"]
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = rng.integers(0, 255, (size, size + 3, 3), dtype=np.uint8)
            img = Image.fromarray(arr).convert(modes[i % len(modes)])
            img.save(root / c / f"{i}.png")


# -- datamodule -----------------------------------------------------------------------------------
def test_digits_batches_and_splits_are_seeded_and_stratified() -> None:
    dm = ClassificationDataModule("digits", image_size=28, in_chans=1, batch_size=16, seed=3)
    dm.setup()
    assert dm.num_classes == 10 and dm.class_names == [str(i) for i in range(10)]
    sizes = {k: len(v[1]) for k, v in dm._splits.items()}
    assert sum(sizes.values()) == 1797
    assert not set(dm._splits["train"][1]) & set(dm._splits["test"][1])
    test_labels = dm._splits["test"][0].labels[dm._splits["test"][1]]
    assert set(np.bincount(test_labels, minlength=10)) <= set(range(30, 42))  # stratified
    again = ClassificationDataModule("digits", seed=3)
    again.setup()
    assert again._splits["val"][1] == dm._splits["val"][1]
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (16, 1, 28, 28) and batch["image"].dtype == torch.float32
    assert batch["label"].dtype == torch.int64


def test_grey_digits_become_rgb_for_rgb_backbones() -> None:
    dm = ClassificationDataModule("digits", image_size=32, in_chans=3, batch_size=4, augment="none")
    x = next(iter(dm.val_dataloader()))["image"]
    assert x.shape == (4, 3, 32, 32)


def test_image_folder_converts_every_mode(tmp_path: Path) -> None:
    make_folder(tmp_path / "train")
    for chans in (1, 3):
        dm = ClassificationDataModule("imagefolder", root=str(tmp_path), image_size=16, in_chans=chans,
                                      batch_size=12, val_fraction=0.25, test_fraction=0.25)
        dm.setup()
        assert dm.class_names == ["cat", "dog"]
        batch = next(iter(dm.val_dataloader()))
        assert batch["image"].shape[1:] == (chans, 16, 16)
        assert all(p.endswith(".png") for p in batch["id"])


def test_corrupt_image_is_named_or_skipped_with_count(tmp_path: Path) -> None:
    make_folder(tmp_path / "train")
    bad = tmp_path / "train" / "cat" / "broken.jpg"
    bad.write_text("this is not a JPEG")
    good = tmp_path / "train" / "dog" / "0.png"
    truncated = tmp_path / "train" / "dog" / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    dm = ClassificationDataModule("imagefolder", root=str(tmp_path), image_size=16, batch_size=64,
                                  val_fraction=0.3, test_fraction=0.0, augment="none")
    dm.setup()
    with pytest.raises(ImageReadError, match="broken.jpg|truncated.png"):
        for loader in (dm.train_dataloader(), dm.val_dataloader()):
            list(loader)
    skipping = ClassificationDataModule("imagefolder", root=str(tmp_path), skip_bad_images=True,
                                        image_size=16, val_fraction=0.3, test_fraction=0.0)
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        skipping.setup()
    assert sum(len(v[1]) for k, v in skipping._splits.items() if k != "test") == 12


def test_folder_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ClassificationDataModule("imagefolder", root=str(tmp_path / "missing")).setup()
    make_folder(tmp_path / "train")
    (tmp_path / "train" / "empty_class").mkdir()
    with pytest.raises(ValueError, match="no images: empty_class"):
        ClassificationDataModule("imagefolder", root=str(tmp_path)).setup()


def test_torchvision_source_without_files_says_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="download: true"):
        ClassificationDataModule("mnist", root=str(tmp_path)).setup()


# -- task -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("head", ["paper", "linear"])
def test_task_forward_shapes_and_bf16(head: str) -> None:
    task = ClassificationTask("resnet18", num_classes=7, head=head).eval()
    x = torch.randn(2, 3, 45, 61)
    assert task(x).shape == (2, 7)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = task(x)
    assert out.shape == (2, 7) and torch.isfinite(out.float()).all()


def test_class_count_and_channel_mismatch_fail_clearly(tmp_path: Path) -> None:
    dm = ClassificationDataModule("digits", image_size=28, in_chans=1)
    with pytest.raises(ValueError, match="num_classes=5 but the data has 10 classes"):
        quiet_trainer(tmp_path, max_epochs=1).fit(ClassificationTask("lenet5", 5, in_chans=1), datamodule=dm)
    with pytest.raises(ValueError, match="in_chans=3 but data.in_chans=1"):
        quiet_trainer(tmp_path, max_epochs=1).fit(ClassificationTask("lenet5", 10, in_chans=3), datamodule=dm)
    with pytest.raises(ValueError, match="available: "):
        ClassificationTask("lenet6", 10)


def test_sgd_with_plateau_schedule_is_wired_to_the_monitored_metric() -> None:
    task = ClassificationTask(
        "lenet5", 10, in_chans=1,
        optimizer=lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, weight_decay=5e-4),
        lr_scheduler=lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, mode="max", factor=0.1),
    )
    conf = task.configure_optimizers()
    assert conf["lr_scheduler"]["monitor"] == "val/acc"
    assert conf["optimizer"].defaults["momentum"] == 0.9
    bad = ClassificationTask("lenet5", 10, in_chans=1, lr_scheduler=lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, mode="min"))
    with pytest.raises(ValueError, match="mode: max"):
        bad.configure_optimizers()


def test_epoch_loss_is_the_mean_of_the_steps(tmp_path: Path) -> None:
    """``train/loss_epoch`` is the mean over the epoch's images, logged without Lightning guessing a
    batch size from the batch (it warned)."""
    pl.seed_everything(0)
    dm = ClassificationDataModule("digits", image_size=28, in_chans=1, batch_size=50, augment="none")
    task = ClassificationTask("lenet5", 10, in_chans=1)
    steps: list[tuple[float, int]] = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            steps.append((float(outputs["loss"]), len(batch["image"])))

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*infer the `batch_size`")
        trainer = quiet_trainer(tmp_path, max_epochs=1, limit_val_batches=1, callbacks=[Record()])
        trainer.fit(task, datamodule=dm)
    assert len(steps) > 1
    expected = sum(loss * n for loss, n in steps) / sum(n for _, n in steps)
    assert float(trainer.callback_metrics["train/loss_epoch"]) == pytest.approx(expected, rel=1e-5)
    assert float(trainer.callback_metrics["train/loss"]) == pytest.approx(expected, rel=1e-5)
    names = set(trainer.callback_metrics) | set(trainer.progress_bar_metrics)
    assert not {n for n in names if n.startswith("train/") and n.endswith(("_step_step", "_epoch_step", "_epoch_epoch"))}
    assert {"train/loss_epoch", "train/loss_step"} <= set(trainer.progress_bar_metrics)


@pytest.mark.slow
def test_lenet5_learns_digits(tmp_path: Path) -> None:
    pl.seed_everything(0)
    dm = ClassificationDataModule("digits", image_size=28, in_chans=1, batch_size=32, augment="none")
    task = ClassificationTask("lenet5", 10, in_chans=1, optimizer=lambda p: torch.optim.AdamW(p, lr=3e-3))
    trainer = quiet_trainer(tmp_path, max_epochs=4)
    before = trainer.validate(task, datamodule=dm, verbose=False)[0]
    trainer.fit(task, datamodule=dm)
    after = trainer.validate(task, datamodule=dm, verbose=False)[0]
    assert after["val/loss"] < before["val/loss"] * 0.3
    assert before["val/acc"] < 0.3 and after["val/acc"] > 0.9


@pytest.mark.slow
def test_bf16_mixed_fit_trains(tmp_path: Path) -> None:
    pl.seed_everything(0)
    dm = ClassificationDataModule("digits", image_size=28, in_chans=1, batch_size=32, augment="none")
    task = ClassificationTask("lenet5", 10, in_chans=1, optimizer=lambda p: torch.optim.AdamW(p, lr=3e-3))
    trainer = quiet_trainer(tmp_path, max_epochs=3, precision="bf16-mixed")
    trainer.fit(task, datamodule=dm)
    acc = trainer.validate(task, datamodule=dm, verbose=False)[0]["val/acc"]
    assert acc > 0.85
    assert all(p.dtype == torch.float32 for p in task.parameters())  # master weights stay fp32


@pytest.mark.slow
def test_ddp_two_cpu_processes_train_and_match_single_process(tmp_path: Path, port: int) -> None:
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
    env.pop("LOCAL_RANK", None)
    script = Path(__file__).parent / "scripts" / "ddp_classification.py"
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=420)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["world_size"] == 2
    assert result["ddp_val_acc"] > 0.85  # a trained model
    assert result["val_size"] % 2 == 0  # no padded duplicates: the two numbers must agree exactly
    rows = json.loads((tmp_path / "predictions" / "predictions.json").read_text())
    assert len(rows) == len({r["id"] for r in rows}) == result["predict_size"]  # both ranks, once each
    task = ClassificationTask.load_from_checkpoint(tmp_path / "ddp.ckpt", map_location="cpu")
    dm = ClassificationDataModule("digits", image_size=28, in_chans=1, batch_size=32, augment="none")
    single = quiet_trainer(tmp_path).validate(task, datamodule=dm, verbose=False)[0]["val/acc"]
    assert result["ddp_val_acc"] == pytest.approx(single, abs=1e-6)


# -- CLI ------------------------------------------------------------------------------------------
def _fit_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--config", str(DEMO), "--trainer.default_root_dir", str(tmp_path),
        "--trainer.limit_train_batches", "6", "--trainer.limit_val_batches", "2",
        "--trainer.limit_test_batches", "2", "--trainer.limit_predict_batches", "2",
        "--trainer.enable_progress_bar", "false", *extra,
    ]


@pytest.mark.slow
def test_cli_fit_resume_test_predict(tmp_path: Path, capsys) -> None:
    run = tmp_path / "lenet5_digits" / "version_0"
    assert cli_main(["fit", *_fit_args(tmp_path, "--trainer.max_epochs", "1")]) == 0
    assert (run / "config.yaml").is_file() and (run / "metrics.csv").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "confusion_matrix" / "val.png").is_file()
    first = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]

    assert cli_main(["fit", *_fit_args(tmp_path, "--trainer.max_epochs", "2", "--ckpt_path", "last")]) == 0
    resumed = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert resumed["global_step"] == 2 * first and resumed["epoch"] == 1  # continued, not restarted
    assert not (tmp_path / "lenet5_digits" / "version_1").exists()  # same run folder
    assert list(run.glob("metrics.part*.csv"))  # the first part's metrics were kept

    assert cli_main(["test", *_fit_args(tmp_path, "--ckpt_path", "best")]) == 0
    metrics = json.loads((run / "test" / "test_metrics.json").read_text())
    assert 0.0 <= metrics["test/acc"] <= 1.0 and "test/acc_top5" in metrics and "test/acc_9" in metrics
    assert (run / "test" / "confusion_matrix" / "test.png").is_file()

    assert cli_main(["predict", *_fit_args(tmp_path, "--ckpt_path", "last")]) == 0
    rows = json.loads((run / "predict" / "predictions" / "predictions.json").read_text())
    assert len(rows) == 64 and {"id", "index", "name", "p_0"} <= set(rows[0])
    assert abs(sum(rows[0][f"p_{i}"] for i in range(10)) - 1) < 1e-3
    assert (run / "predict" / "predictions" / "predictions.csv").read_text().startswith("id,index,name")


def test_print_config_for_every_config(capsys) -> None:
    """Every run config (a YAML with ``model``) in configs/ and the demo's is valid for LightningCLI:
    its classes import, its arguments type-check, and it runs where it lands (accelerator, devices
    and precision ``auto``: visiontasks.trainer's rule picks the precision)."""
    import yaml

    shipped = [*sorted((ROOT / "configs").rglob("*.yaml")), *sorted((ROOT / "visiontasks/commands").glob("*.yaml"))]
    configs = [p for p in shipped if "model" in yaml.safe_load(p.read_text())]
    assert len(configs) >= 7
    for cfg in configs:
        with pytest.raises(SystemExit) as exit_info:
            cli_main(["fit", "--config", str(cfg), "--print_config"])
        assert exit_info.value.code in (0, None), cfg
        printed = yaml.safe_load(capsys.readouterr().out)
        assert "class_path" in printed["model"], cfg
        where = {k: printed["trainer"][k] for k in ("accelerator", "devices", "precision")}
        assert where == {"accelerator": "auto", "devices": "auto", "precision": "auto"}, cfg


def test_summary_command_prints_table_and_totals(capsys) -> None:
    assert cli_main(["summary", "lenet5", "--num_classes", "10"]) == 0
    out = capsys.readouterr().out
    assert "61,706 parameters" in out and "Conv2d" in out and "multiply-adds" in out
