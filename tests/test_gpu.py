"""The CUDA paths, marked ``gpu``: skipped where ``torch.cuda.is_available()`` is False (conftest.py),
run on a GPU machine with ``pytest -m gpu`` (``benchmarks/gpu_check.sh`` does).

Written before a GPU was lent to this project: they were collected and skipped here, never run.

* 16-mixed and bf16-mixed fits of each task family (classification, segmentation, detection,
  instance segmentation) for a few steps on tiny generated data: autocast engages (convolutions
  return half-precision activations), weights stay float32, losses and metrics are finite;
* ``precision: auto`` resolves to bf16-mixed on a bf16 GPU (16-mixed on others);
* channels_last segmentation: weights and activations in NHWC on CUDA;
* pinned batches: the loaders pin on CUDA, and the batch arrives on the GPU;
* 2-GPU DDP through ``visiontasks fit`` (skipped below 2 GPUs);
* export of a checkpoint trained on CUDA (ONNX and TorchScript, checked against eager), and the
  TorchScript file run on CUDA.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.fabric.utilities.apply_func import apply_to_collection
from lightning.pytorch import Callback
from torch import nn

from visiontasks.data import ClassificationDataModule, SegmentationDataModule
from visiontasks.data.detection import write_synthetic_detection
from visiontasks.tasks import ClassificationTask, SegmentationTask
from visiontasks.trainer import VisionTrainer

sys.path.insert(0, str(Path(__file__).parent))
from detection_ddp_script import make as make_detection  # noqa: E402
from test_multi_node import detector_config, segmenter_config, write_config  # noqa: E402

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parents[1]
ACCELERATOR, DEVICE = "gpu", "cuda"  # where the tests run (one place)
BF16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
PRECISIONS = ["16-mixed", pytest.param("bf16-mixed", marks=pytest.mark.skipif(not BF16, reason="no bfloat16"))]
HALF = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}
FAMILIES = ["classification", "segmentation", "detection", "instance_segmentation"]


def build(family: str, root: Path, **task_kw: Any) -> tuple[Any, Any]:
    """A tiny task and datamodule of ``family`` on data generated under ``root``."""
    if family == "classification":
        dm = ClassificationDataModule(source="synthetic", root=str(root / "cls"), image_size=32, batch_size=8,
                                      synthetic_classes=3, synthetic_per_class=12, num_workers=0)
        return ClassificationTask(backbone="resnet18", num_classes=3, **task_kw), dm
    if family == "segmentation":
        dm = SegmentationDataModule(root=str(root / "seg"), format="synthetic", synthetic={"counts": (12, 4, 2),
                                    "image_size": 48, "num_shapes": 2}, crop_size=48, batch_size=4, num_workers=0)
        return SegmentationTask("fcn8s", "resnet18", num_classes=3, fc_channels=16, fc_kernel_size=1, **task_kw), dm
    data = write_synthetic_detection(root / "det", "coco", splits={"train": 8, "val": 4}, image_size=64,
                                     num_classes=2, max_objects=2, size_range=(0.2, 0.35),
                                     background_fraction=0.0, seed=1, masks=True)
    return make_detection("mask_rcnn" if family == "instance_segmentation" else "faster_rcnn", str(data))


def trainer(root: Path, precision: str = "auto", **kw: Any) -> VisionTrainer:
    args = dict(accelerator=ACCELERATOR, devices=1, max_epochs=1, limit_train_batches=3, limit_val_batches=2,
                num_sanity_val_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, default_root_dir=str(root))
    return VisionTrainer(precision=precision, **{**args, **kw})


def first_conv(module: nn.Module) -> nn.Conv2d:
    return next(m for m in module.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("family", FAMILIES)
def test_mixed_precision_fit(family: str, precision: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    task, dm = build(family, tmp_path)
    seen: list[torch.dtype] = []
    first_conv(task).register_forward_hook(lambda m, i, o: seen.append(o.dtype) if m.training else None)
    tr = trainer(tmp_path, precision)
    tr.fit(task, datamodule=dm)
    assert tr.precision == precision and tr.global_step == 3
    assert seen and set(seen) == {HALF[precision]}, seen  # autocast ran the convolutions in half precision
    assert next(task.parameters()).device.type == DEVICE
    assert all(p.dtype == torch.float32 for p in task.parameters())  # mixed: the weights stay fp32
    if precision == "16-mixed":
        assert tr.precision_plugin.scaler is not None  # float16 needs the gradient scaler
    metrics = {k: float(v) for k, v in tr.callback_metrics.items()}
    assert "train/loss" in metrics and any(k.startswith("val/") for k in metrics), metrics
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values()), metrics


def test_auto_precision_on_this_gpu(tmp_path: Path) -> None:
    tr = VisionTrainer(accelerator="auto", devices=1, logger=False, default_root_dir=str(tmp_path))
    assert tr.strategy.root_device.type == "cuda"
    assert tr.precision == ("bf16-mixed" if BF16 else "16-mixed")


def test_channels_last_segmentation(tmp_path: Path) -> None:
    task, dm = build("segmentation", tmp_path, channels_last=True)
    conv = first_conv(task.model)
    layouts: list[bool] = []
    conv.register_forward_hook(lambda m, i, o: layouts.append(i[0].is_contiguous(memory_format=torch.channels_last)))
    trainer(tmp_path, "bf16-mixed" if BF16 else "16-mixed").fit(task, datamodule=dm)
    assert conv.weight.device.type == DEVICE and conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert layouts and all(layouts)


class _BatchDevice(Callback):
    """Records where each training batch's tensors are when the step starts."""

    def __init__(self) -> None:
        self.devices: set[str] = set()

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        apply_to_collection(batch, torch.Tensor, lambda t: self.devices.add(t.device.type))


@pytest.mark.parametrize("family", ["classification", "detection"])
def test_batches_are_pinned_and_reach_the_gpu(family: str, tmp_path: Path) -> None:
    task, dm = build(family, tmp_path)
    where = _BatchDevice()
    tr = trainer(tmp_path, max_steps=2, limit_val_batches=0, callbacks=[where])
    tr.fit(task, datamodule=dm)
    assert dm.resolved_pin_memory()
    loader = dm.train_dataloader()
    assert loader.pin_memory
    pinned: list[bool] = []
    apply_to_collection(next(iter(loader)), torch.Tensor, lambda t: pinned.append(t.is_pinned()))
    assert pinned and all(pinned)
    assert where.devices == {DEVICE}


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
@pytest.mark.parametrize("make", [detector_config, segmenter_config], ids=["detector", "segmenter"])
def test_two_gpu_ddp_fit_through_the_cli(make: Any, tmp_path: Path) -> None:
    """Lightning's own launcher starts the second process (it re-runs the command line, so not pytest's)."""
    config = write_config(tmp_path, make(tmp_path))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for key in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "RANK", "VISIONTASKS_RUN_VERSION"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "visiontasks.cli", "fit", "--config", str(config),
                           "--trainer.accelerator", "gpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = tmp_path / "runs" / "tiny"
    assert sorted(p.name for p in runs.iterdir()) == ["version_0"]
    ckpt = torch.load(runs / "version_0/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2  # 4 images, batch 1, 2 GPUs
    amp = "bfloat16" if BF16 else "16bit"  # Lightning's line: "Using bfloat16 Automatic Mixed Precision (AMP)"
    assert f"Using {amp} Automatic Mixed Precision" in proc.stdout + proc.stderr, "precision: auto chose no AMP"


@pytest.mark.parametrize("family", ["classification", "segmentation", "detection"])
def test_export_of_a_cuda_trained_checkpoint(family: str, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from visiontasks.export import export_checkpoint

    task, dm = build(family, tmp_path)
    tr = trainer(tmp_path, max_steps=2, limit_val_batches=1)
    tr.fit(task, datamodule=dm)
    tr.save_checkpoint(tmp_path / "cuda.ckpt")
    for fmt in ("onnx", "torchscript"):
        done = export_checkpoint(tmp_path / "cuda.ckpt", fmt, tmp_path / f"model.{fmt}")  # checked against eager
        assert done.path.is_file()
    if family == "detection":
        return  # traced detection post-processing keeps the CPU it was traced on
    cpu = torch.jit.load(str(tmp_path / "model.torchscript"), map_location="cpu")
    gpu = torch.jit.load(str(tmp_path / "model.torchscript"), map_location=DEVICE)
    side = 32 if family == "classification" else 48  # the exported size
    image = torch.randint(0, 256, (2, side, side, 3), dtype=torch.uint8)
    expected, got = cpu(image)[0], gpu(image.to(DEVICE))[0]
    assert got.device.type == DEVICE
    torch.testing.assert_close(got.float().cpu(), expected.float(), atol=2e-2, rtol=2e-2)  # TF32 convolutions
