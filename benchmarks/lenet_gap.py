"""Where LeNet-5's fit loses to the MNIST tensor loop: the gap of ``end_to_end.py``'s ``fit/tensor``,
taken apart one layer at a time, all in one process, the sides alternated ``--repeats`` times.

Each side trains one epoch of the 8,000-PNG digit folder (``end_to_end.make_digit_folder``; batch 32,
AdamW, the same LeNet-5 ``ClassificationTask``, seeded) and then validates; the time is that epoch
(set-up excluded). Every side adds one thing to the one before:

- ``tensor``: ``end_to_end.py``'s tensor side: the split as one uint8 tensor, batches by indexing,
  random shifts of up to 2 px by indexing a padded batch;
- ``tensor_light``: the same loop with visiontasks' ``light`` batch augmentation
  (``prepare_batch``: per-sample affine by ``grid_sample`` + brightness/contrast) instead of shifts;
- ``loader``: the datamodule's own loaders (``cache: auto`` -> the in-memory path, its
  ``DataLoader`` with a batch sampler and the ``BatchPreparer`` collate) in a plain loop;
- ``lightning``: a bare Lightning ``Trainer`` (no logger, checkpoint, progress bar or summary)
  fitting a minimal ``LightningModule`` (the task's network, cross-entropy, argmax validation, no
  metrics or logging) on the same loaders: Lightning's own loop;
- ``trainer``: the same Trainer fitting the task on the datamodule: the task's steps, loss log,
  metrics and hooks;
- ``cli_trainer``: the Trainer ``visiontasks fit`` builds from a config (``build_cli(run=False)``:
  its checkpoint callback, TensorBoard logger, output callbacks), progress bar off.

Prints seconds per epoch (median) and, per side, the ratio ``tensor / side`` and the extra
milliseconds per training step over the side before it.

    python benchmarks/lenet_gap.py                      # 3 rounds
    python benchmarks/lenet_gap.py --repeats 1 --images 800
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from end_to_end import make_digit_folder  # noqa: E402

from visiontasks.cli import build_cli  # noqa: E402
from visiontasks.data import ClassificationDataModule  # noqa: E402
from visiontasks.data.classification.batched import prepare_batch  # noqa: E402
from visiontasks.tasks import ClassificationTask  # noqa: E402

BATCH = 32
TASK = {"backbone": "lenet5", "in_chans": 1, "head": "paper"}
DATA = {"source": "imagefolder", "image_size": 28, "in_chans": 1, "batch_size": BATCH, "augment": "light"}


def new_task(classes: int) -> tuple[ClassificationTask, torch.optim.Optimizer]:
    torch.manual_seed(0)
    task = ClassificationTask(num_classes=classes, **TASK)
    return task, torch.optim.AdamW(task.parameters(), lr=1e-3, weight_decay=1e-4)


def step(task: ClassificationTask, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    loss = F.cross_entropy(task(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()


class Split:
    """The datamodule's held splits as tensors (``uint8 [N, 1, 28, 28]``, labels) and its mean/std."""

    def __init__(self, dm: ClassificationDataModule) -> None:
        def held(loader: Any) -> tuple[torch.Tensor, torch.Tensor]:
            ds = loader.dataset
            return torch.from_numpy(np.ascontiguousarray(ds.images)).permute(0, 3, 1, 2).contiguous(), ds.labels

        (self.xs, self.ys), (self.xv, self.yv) = held(dm.train_dataloader()), held(dm.val_dataloader())
        self.mean, self.std = dm.mean, dm.std
        self.m = torch.tensor(dm.mean).view(1, -1, 1, 1) * 255
        self.s = torch.tensor(dm.std).view(1, -1, 1, 1) * 255
        self.classes = len(dm.class_names)


def tensor_epoch(data: Split, augment: Callable[[torch.Tensor], torch.Tensor]) -> float:
    task, opt = new_task(data.classes)
    start = time.perf_counter()
    task.train()
    order = torch.randperm(len(data.xs))
    for k in range(len(data.xs) // BATCH):  # drop_last, as fit's training loader
        idx = order[k * BATCH : (k + 1) * BATCH]
        step(task, opt, augment(data.xs[idx]), data.ys[idx])
    task.eval()
    with torch.no_grad():
        for k in range(0, len(data.xv), BATCH):
            task((data.xv[k : k + BATCH].float() - data.m) / data.s).argmax(1)
    return time.perf_counter() - start


def shifts(data: Split, pad: int = 2) -> Callable[[torch.Tensor], torch.Tensor]:
    """``end_to_end.tensor_classification``'s augmentation: each image shifted by up to ``pad`` px."""
    ar = torch.arange(data.xs.shape[-1])

    def fn(images: torch.Tensor) -> torch.Tensor:
        n = len(images)
        x = F.pad(images.float(), (pad,) * 4)
        dy, dx = (torch.randint(0, 2 * pad + 1, (n, 1)) for _ in range(2))
        rows, cols = (ar[None] + dy)[:, None, :, None], (ar[None] + dx)[:, None, None, :]
        x = x[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None], rows, cols]
        return (x - data.m) / data.s

    return fn


def loader_epoch(dm: ClassificationDataModule, data: Split) -> float:
    task, opt = new_task(data.classes)
    train, val = dm.train_dataloader(), dm.val_dataloader()
    start = time.perf_counter()
    task.train()
    for b in train:
        step(task, opt, b["image"], b["label"])
    task.eval()
    with torch.no_grad():
        for b in val:
            task(b["image"]).argmax(1)
    return time.perf_counter() - start


class MinimalModule(pl.LightningModule):
    """What a Lightning user writes first: forward, cross-entropy, AdamW; validation only predicts."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return F.cross_entropy(self.net(batch["image"]), batch["label"])

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.net(batch["image"]).argmax(1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-3, weight_decay=1e-4)


class EpochClock(pl.Callback):
    """The first training epoch's time, its validation included (Lightning runs it before
    ``on_train_epoch_end``)."""

    def __init__(self) -> None:
        self.seconds = float("nan")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds = time.perf_counter() - self.start


def bare_trainer(clock: EpochClock, work: Path) -> pl.Trainer:
    return pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                      callbacks=[clock], default_root_dir=str(work))


def lightning_epoch(dm: ClassificationDataModule, data: Split, work: Path) -> float:
    task, _ = new_task(data.classes)
    clock = EpochClock()
    bare_trainer(clock, work).fit(MinimalModule(task.model), dm.train_dataloader(), dm.val_dataloader())
    return clock.seconds


def trainer_epoch(dm: ClassificationDataModule, data: Split, work: Path) -> float:
    task, _ = new_task(data.classes)
    clock = EpochClock()
    bare_trainer(clock, work).fit(task, datamodule=dm)
    return clock.seconds


def cli_trainer_epoch(root: Path, work: Path) -> float:
    config = {
        "seed_everything": 0,
        "model": {"class_path": "visiontasks.tasks.ClassificationTask",
                  "init_args": {**TASK, "optimizer": {"class_path": "torch.optim.AdamW",
                                                      "init_args": {"lr": 0.001, "weight_decay": 0.0001}}}},
        "data": {"class_path": "visiontasks.data.ClassificationDataModule", "init_args": {**DATA, "root": str(root)}},
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "devices": 1, "default_root_dir": str(work),
                    "log_every_n_steps": 10, "enable_progress_bar": False, "num_sanity_val_steps": 0},
    }
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    cli = build_cli(["--config", str(cfg)], run=False)
    clock = EpochClock()
    cli.trainer.callbacks.append(clock)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return clock.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work-dir", type=Path, default=Path.home() / ".cache" / "visiontasks" / "bench")
    args = parser.parse_args()
    root = make_digit_folder(args.work_dir / f"digits{args.images}", args.images)
    dm = ClassificationDataModule(root=str(root), **DATA)
    dm.setup("fit")
    data = Split(dm)
    steps = len(data.xs) // BATCH
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sides: dict[str, Callable[[], float]] = {
            "tensor": lambda: tensor_epoch(data, shifts(data)),
            "tensor_light": lambda: tensor_epoch(data, lambda x: prepare_batch(x, data.mean, data.std, "light")),
            "loader": lambda: loader_epoch(dm, data),
            "lightning": lambda: lightning_epoch(dm, data, work / "lightning"),
            "trainer": lambda: trainer_epoch(dm, data, work / "trainer"),
            "cli_trainer": lambda: cli_trainer_epoch(root, work / "cli"),
        }
        times: dict[str, list[float]] = {k: [] for k in sides}
        for _ in range(args.repeats):
            for name, run in sides.items():
                times[name].append(run())
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{steps} training steps + {len(data.xv)} validation images an epoch, torch threads {torch.get_num_threads()}")
    print(f"{'side':<14}{'s/epoch':>9}{'tensor/side':>13}{'+ms/step':>10}   rounds")
    before = None
    for name, t in med.items():
        extra = "" if before is None else f"{(t - before) / steps * 1000:+.2f}"
        print(f"{name:<14}{t:>9.3f}{med['tensor'] / t:>13.2f}{extra:>10}   {', '.join(f'{v:.3f}' for v in times[name])}")
        before = t


if __name__ == "__main__":
    main()
