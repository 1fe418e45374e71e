"""Segmentation runs: a tiny learning run, the loss contract, a bf16-mixed fit, the CLI through its
real entry point (fit, test, predict with the shipped config), and a 2-process DDP fit whose mIoU
equals the single-process mIoU on the same validation data."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image

from visiontasks.data.segmentation import SegmentationDataModule
from visiontasks.tasks.segmentation import SegmentationTask

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs" / "segmentation").glob("*.yaml"))


def tiny_data(root: Path, **kw) -> SegmentationDataModule:
    """48x48 synthetic scenes with two shape kinds (3 classes); validation on the training images
    unless told otherwise, so a few steps are enough to see learning."""
    args = dict(
        root=str(root),
        format="synthetic",
        synthetic={"counts": (16, 8, 4), "image_size": 48, "num_shapes": 2, "max_objects": 2,
                   "size_range": (0.25, 0.4)},
        crop_size=48,
        scale_range=(1.0, 1.0),
        batch_size=8,
        val_split="train",
        seed=0,
    )
    args.update(kw)
    return SegmentationDataModule(**args)


def tiny_task(model: str = "fcn8s", lr: float = 3e-3) -> SegmentationTask:
    return SegmentationTask(
        model,
        "resnet18",
        num_classes=3,
        fc_channels=32,
        fc_kernel_size=1,
        dropout=0.0,
        optimizer=lambda p: torch.optim.AdamW(p, lr=lr),
    )


def trainer(tmp_path: Path, **kw) -> pl.Trainer:
    args = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        num_sanity_val_steps=0,
    )
    args.update(kw)
    return pl.Trainer(**args)


def test_loss_ignores_pixels_and_weights_classes():
    task = SegmentationTask("fcn32s", "resnet18", num_classes=3, fc_channels=0)
    logits = torch.randn(2, 3, 5, 6, requires_grad=True)
    target = torch.randint(0, 3, (2, 5, 6))
    all_ignored = torch.full_like(target, 255)
    loss = task.loss(logits, all_ignored)
    loss.backward()
    assert loss.item() == 0 and logits.grad is not None  # no NaN from an empty mean
    part = target.clone()
    part[:, :2] = 255
    keep = part != 255
    ref = torch.nn.functional.cross_entropy(logits.permute(0, 2, 3, 1)[keep], part[keep])
    assert task.loss(logits, part).item() == pytest.approx(ref.item(), rel=1e-5)
    weighted = SegmentationTask("fcn32s", "resnet18", num_classes=3, fc_channels=0, class_weights=[0.0, 1.0, 1.0])
    only_zero = torch.zeros_like(target)
    only_zero[0, 0, 0] = 1
    # class 0 has weight 0: only the one class-1 pixel counts
    ref1 = torch.nn.functional.cross_entropy(logits[:1, :, 0, 0], torch.tensor([1]))
    assert weighted.loss(logits, only_zero).item() == pytest.approx(ref1.item(), rel=1e-5)
    with pytest.raises(ValueError, match="class_weights has 2 values for 3 classes"):
        SegmentationTask("fcn32s", "resnet18", num_classes=3, class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="strides"):
        SegmentationTask("fcn8s", "lenet5", num_classes=3)


def test_one_cycle_steps_every_batch_other_schedulers_every_epoch():
    def task(factory):
        return SegmentationTask("fcn32s", "resnet18", num_classes=3, fc_channels=0, lr_scheduler=factory)

    one_cycle = task(lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.01, total_steps=10))
    assert one_cycle.configure_optimizers()["lr_scheduler"]["interval"] == "step"
    cosine = task(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=3))
    assert cosine.configure_optimizers()["lr_scheduler"]["interval"] == "epoch"


def test_class_count_must_match_data(tmp_path):
    dm = tiny_data(tmp_path / "data")
    task = SegmentationTask("fcn32s", "resnet18", num_classes=5, fc_channels=0)
    with pytest.raises(ValueError, match="num_classes=5 but the data has 3 classes"):
        trainer(tmp_path, max_steps=1).fit(task, dm)


@pytest.mark.slow
def test_fcn8s_learns_on_tiny_shapes(tmp_path):
    pl.seed_everything(0)
    dm = tiny_data(tmp_path / "data")
    task = tiny_task("fcn8s")
    before = trainer(tmp_path).validate(task, dm, verbose=False)[0]
    losses: list[float] = []

    class Record(pl.Callback):
        def on_train_epoch_end(self, tr, module):
            losses.append(float(tr.callback_metrics["train/loss_epoch"]))

    trainer(tmp_path, max_epochs=12, callbacks=[Record()]).fit(task, dm)
    after = trainer(tmp_path).validate(task, dm, verbose=False)[0]
    assert losses[-1] < 0.6 * losses[0], losses
    assert after["val/mIoU"] > before["val/mIoU"] + 0.15, (before, after)


@pytest.mark.slow
def test_bf16_mixed_fit(tmp_path):
    pl.seed_everything(0)
    dm = tiny_data(tmp_path / "data")
    task = tiny_task("fcn16s")
    dtypes = []
    task.model.head.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    tr = trainer(tmp_path, max_epochs=2, limit_train_batches=1, limit_val_batches=1, precision="bf16-mixed")
    tr.fit(task, dm)
    assert torch.bfloat16 in dtypes  # the decoder really ran in bf16
    m = tr.callback_metrics
    assert math.isfinite(float(m["train/loss"])) and 0 <= float(m["val/mIoU"]) <= 1


@pytest.mark.slow
def test_cli_fit_test_predict_with_shipped_config(tmp_path, capsys, monkeypatch):
    from visiontasks.cli import main

    monkeypatch.setattr(sys, "argv", ["visiontasks"])  # LightningCLI also looks at sys.argv
    config = REPO / "configs" / "segmentation" / "fcn8s_resnet18_shapes.yaml"
    common = [
        "--config", str(config),
        "--trainer.default_root_dir", str(tmp_path / "runs"),
        "--data.init_args.root", str(tmp_path / "shapes"),
        "--data.init_args.synthetic.counts", "[8, 4, 3]",
        "--data.init_args.synthetic.image_size", "40",
        "--data.init_args.crop_size", "40",
        "--data.init_args.batch_size", "4",
        "--model.init_args.fc_channels", "16",
    ]  # fmt: skip
    assert main(["fit", *common, "--trainer.max_epochs", "1", "--trainer.max_time", "null"]) == 0
    run = tmp_path / "runs" / "fcn8s_resnet18_shapes" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert "val/mIoU" in (run / "metrics.csv").read_text()
    assert main(["test", *common, "--ckpt_path", "last"]) == 0
    out = capsys.readouterr().out
    assert "Per-class IoU" in out and "circle" in out and "background" in out
    assert list(run.rglob("test_iou.csv"))
    assert main(["predict", *common, "--ckpt_path", "last"]) == 0
    masks = sorted(run.rglob("predictions/*_mask.png"))
    overlays = sorted(run.rglob("predictions/*_overlay.png"))
    assert len(masks) == len(overlays) == 3
    for mask_path in masks:
        image = Image.open(tmp_path / "shapes" / "images" / "test" / mask_path.name.replace("_mask", ""))
        with Image.open(mask_path) as m:
            assert m.size == image.size and m.mode == "P"
            assert np.asarray(m).max() < 7  # class indices


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_shipped_configs_parse(config, capsys, monkeypatch):
    from visiontasks.cli import main

    monkeypatch.setattr(sys, "argv", ["visiontasks"])
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_.value.code in (0, None)
    assert "SegmentationTask" in capsys.readouterr().out


DDP_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    import lightning.pytorch as pl
    sys.path.insert(0, {tests!r})
    from test_segmentation_training import tiny_data, tiny_task

    torch.set_num_threads(1)
    out = {out!r}
    pl.seed_everything(0)
    dm = tiny_data({data!r}, val_split="val", eval_batch_size=2)
    task = tiny_task("fcn8s")
    kw = dict(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, default_root_dir={root!r},
              num_sanity_val_steps=0)
    tr = pl.Trainer(max_epochs=3, **kw)
    tr.fit(task, dm)
    loss = float(tr.callback_metrics["train/loss"])
    res = tr.validate(task, dm, verbose=False)[0]
    if tr.is_global_zero:
        torch.save(task.state_dict(), out + ".pt")
        with open(out, "w") as f:
            json.dump({{"mIoU": res["val/mIoU"], "pixel_acc": res["val/pixel_acc"],
                       "world_size": tr.world_size, "loss": loss}}, f)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_processes_mIoU_equals_single_process(tmp_path):
    out = tmp_path / "ddp.json"
    script = tmp_path / "ddp_fit.py"
    script.write_text(
        DDP_SCRIPT.format(tests=str(REPO / "tests"), out=str(out), data=str(tmp_path / "data"), root=str(tmp_path))
    )
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "OMP_NUM_THREADS": "1"}
    env.pop("LOCAL_RANK", None)
    proc = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ddp = json.loads(out.read_text())
    assert ddp["world_size"] == 2 and math.isfinite(ddp["loss"])
    # the same weights, one process, the same 8 validation images
    task = tiny_task("fcn8s")
    task.load_state_dict(torch.load(str(out) + ".pt"))
    dm = tiny_data(tmp_path / "data", val_split="val", eval_batch_size=2)
    single = trainer(tmp_path).validate(task, dm, verbose=False)[0]
    assert single["val/mIoU"] == pytest.approx(ddp["mIoU"], abs=1e-6)
    assert single["val/pixel_acc"] == pytest.approx(ddp["pixel_acc"], abs=1e-6)
    # and the DDP value is not one rank's own half (rank 0 validates images 0, 2, 4, 6)
    dm.setup("validate")
    dm.datasets["val"].samples = dm.datasets["val"].samples[::2]
    half = trainer(tmp_path).validate(task, dm, verbose=False)[0]
    assert half["val/pixel_acc"] != pytest.approx(ddp["pixel_acc"], abs=1e-6)
