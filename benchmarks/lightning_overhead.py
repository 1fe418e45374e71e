"""Lightning overhead: ClassificationTask through the Trainer vs a plain PyTorch loop.

Same backbone, same data loader, same batch size, same optimizer; the two are alternated in one
process (``--rounds`` times) and the median throughput (images/s) of each is compared:
``ratio = ours / plain`` (goal >= 0.95).

    python benchmarks/lightning_overhead.py                       # resnet18, 64x64, batch 64
    python benchmarks/lightning_overhead.py --backbone lenet5 --source digits --image-size 28 --in-chans 1
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from visiontasks.data import ClassificationDataModule
from visiontasks.tasks import ClassificationTask


def make_task(args: argparse.Namespace) -> ClassificationTask:
    torch.manual_seed(0)
    return ClassificationTask(
        backbone=args.backbone,
        num_classes=args.num_classes,
        in_chans=args.in_chans,
        head="paper",
        optimizer=lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
    )


def run_lightning(args: argparse.Namespace, dm: ClassificationDataModule) -> float:
    task = make_task(args)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=args.steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    trainer.fit(task, train_dataloaders=dm.train_dataloader())
    return args.steps * args.batch_size / (time.perf_counter() - start)


def run_plain(args: argparse.Namespace, dm: ClassificationDataModule) -> float:
    task = make_task(args)
    model = task.model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    steps = 0
    start = time.perf_counter()
    while steps < args.steps:
        for batch in dm.train_dataloader():
            loss = F.cross_entropy(model(batch["image"]), batch["label"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
            if steps == args.steps:
                break
    return args.steps * args.batch_size / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--source", default="synthetic", choices=["synthetic", "digits"])
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--in-chans", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--root", default="data/synthetic_classification")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    dm = ClassificationDataModule(
        source=args.source,
        root=args.root,
        image_size=args.image_size,
        in_chans=args.in_chans,
        batch_size=args.batch_size,
        augment="none",
        synthetic_per_class=200,
    )
    dm.setup()
    args.num_classes = dm.num_classes
    # warm-up both paths once (allocator, thread pools)
    run_plain(argparse.Namespace(**{**vars(args), "steps": 3}), dm)
    run_lightning(argparse.Namespace(**{**vars(args), "steps": 3}), dm)
    ours, plain = [], []
    for r in range(args.rounds):
        first, second = (run_lightning, run_plain) if r % 2 == 0 else (run_plain, run_lightning)
        a, b = first(args, dm), second(args, dm)
        (ours if first is run_lightning else plain).append(a)
        (plain if first is run_lightning else ours).append(b)
        print(f"round {r}: lightning {ours[-1]:.1f} img/s, plain {plain[-1]:.1f} img/s")
    ratio = statistics.median(ours) / statistics.median(plain)
    print(
        f"{args.backbone} {args.image_size}px batch {args.batch_size}, {args.steps} steps x {args.rounds} rounds, "
        f"torch threads {torch.get_num_threads()}: median lightning {statistics.median(ours):.1f} img/s, "
        f"plain {statistics.median(plain):.1f} img/s, ratio ours/plain = {ratio:.3f}"
    )


if __name__ == "__main__":
    main()
