"""``visiontasks demo``: train LeNet-5 on scikit-learn's digits, test it, say where everything is.

Runs ``fit`` then ``test`` (best checkpoint) of ``configs/classification/lenet5_digits.yaml`` in one
process and one run folder. Extra arguments are passed to the CLI (e.g. ``--trainer.max_epochs 5``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "classification" / "lenet5_digits.yaml"


def main(argv: list[str]) -> int:
    from visiontasks.cli import build_cli

    config = DEMO_CONFIG
    if not config.is_file():
        print(f"demo config {config} not found (the demo runs from a checkout of the repository)")
        return 2
    start = time.perf_counter()
    cli = build_cli(["fit", "--config", str(config), *argv])
    trainer = cli.trainer
    results = trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best")
    elapsed = time.perf_counter() - start
    run = Path(trainer.log_dir)
    acc = results[0]["test/acc"] if results else float("nan")
    summary = {
        "test_accuracy": acc,
        "seconds": round(elapsed, 1),
        "run_folder": str(run),
        "best_checkpoint": trainer.checkpoint_callback.best_model_path,
        "metrics_csv": str(run / "metrics.csv"),
        "test_metrics": str(run / "test_metrics.json"),
        "confusion_matrix_png": str(run / "confusion_matrix" / "test.png"),
    }
    (run / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    print("\n" + "=" * 72)
    print(f"LeNet-5 on scikit-learn digits: test accuracy {acc:.4f} ({elapsed:.0f} s)")
    for key, value in summary.items():
        if key not in ("test_accuracy", "seconds"):
            print(f"  {key.replace('_', ' '):22s} {value}")
    print("=" * 72)
    return 0
