"""A time-capped run (``max_time``) with the budget-aware schedule vs the same run with a cosine
schedule sized for more epochs than fit in the budget; held-out (test split) scores of both.

The shapes segmentation config (FCN-8s / ResNet-18, configs/segmentation/fcn8s_resnet18_shapes.yaml),
the same seed and ``--epochs`` (default 18) for both:

- ``budget``: ``visiontasks.schedulers.BudgetScheduler`` (the config's: warmup 0.15, then linear to 0),
  stepped every batch by the elapsed fraction of ``max_epochs`` or ``max_time``, whichever ends first;
- ``cosine``: ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=--epochs)`` stepped every epoch, as
  one would size it for the planned epochs; ``max_time`` stops it part-way, the rate still high.

Each run is a fresh process (``fit`` then ``test`` on the final weights)::

    python benchmarks/budget_schedule.py --minutes 10          # the real comparison (two 10-minute runs)
    python benchmarks/budget_schedule.py --minutes 0.5 --train-images 64   # a quick check that it works
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "segmentation" / "fcn8s_resnet18_shapes.yaml"


def one_run(side: str, minutes: float, epochs: int, train_images: int | None, work: Path) -> dict[str, float]:
    """Fit with ``side``'s schedule under the time cap, then test the final weights (this process)."""
    sys.path.insert(0, str(REPO))
    from visiontasks.lightning_cli import build_cli

    seconds = max(1, int(round(minutes * 60)))
    args = ["--config", str(CONFIG), "--trainer.max_epochs", str(epochs),
            "--trainer.max_time", f"00:{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}",
            "--trainer.default_root_dir", str(work / side), "--trainer.enable_progress_bar", "false",
            "--data.init_args.root", str(work / "data")]
    if train_images:
        args += ["--data.init_args.synthetic.counts", json.dumps([train_images, 50, 100])]
    if side == "cosine":
        args += ["--model.lr_scheduler", json.dumps({"class_path": "torch.optim.lr_scheduler.CosineAnnealingLR",
                                                    "init_args": {"T_max": epochs}})]
    cli = build_cli(args, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    epochs_done = cli.trainer.current_epoch
    results = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    return {"epochs": epochs_done, "test_mIoU": float(results["test/mIoU"]),
            "final_lr": float(cli.trainer.optimizers[0].param_groups[0]["lr"])}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="max_time of each run")
    p.add_argument("--epochs", type=int, default=18, help="max_epochs of both, and the cosine's T_max")
    p.add_argument("--train-images", type=int, default=None, help="fewer synthetic training images (quick checks)")
    p.add_argument("--side", choices=["budget", "cosine"], help=argparse.SUPPRESS)  # one run, in a child
    p.add_argument("--work-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.side:
        print("RESULT " + json.dumps(one_run(args.side, args.minutes, args.epochs, args.train_images, args.work_dir)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        rows = {}
        for side in ("budget", "cosine"):
            cmd = [sys.executable, __file__, "--side", side, "--minutes", str(args.minutes), "--epochs",
                   str(args.epochs), "--work-dir", tmp]
            if args.train_images:
                cmd += ["--train-images", str(args.train_images)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode != 0 or not line:
                raise SystemExit(f"{side} run failed:\n{proc.stderr[-3000:]}")
            rows[side] = json.loads(line[-1][7:])
    print(f"max_time {args.minutes:g} min, max_epochs {args.epochs} (FCN-8s / ResNet-18, shapes, seed 0)")
    print(f"{'schedule':10s} {'epochs run':>10s} {'final lr':>10s} {'test mIoU':>10s}")
    for side, r in rows.items():
        print(f"{side:10s} {r['epochs']:10d} {r['final_lr']:10.2e} {r['test_mIoU']:10.4f}")


if __name__ == "__main__":
    main()
