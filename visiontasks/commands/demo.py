"""``visiontasks demo``: train LeNet-5 on scikit-learn's digits, test it, say where everything is.

Runs ``fit`` then ``test`` (best checkpoint) of the config shipped inside the package
(``visiontasks/commands/lenet5_digits.yaml``, the settings of
``configs/classification/lenet5_digits.yaml``) in one process and one run folder, so it works from an
installed package in any working directory: the digits come with scikit-learn (in memory, nothing
written but the run folder, ``<output>/lenet5_digits/version_N``). Options it does not know are
passed to the CLI (e.g. ``--trainer.accelerator gpu``).
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import ExitStack
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from visiontasks.errors import InvalidInputError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

CONFIG_NAME = "lenet5_digits.yaml"


def build_parser() -> argparse.ArgumentParser:
    """The options of ``visiontasks demo`` (everything else goes to ``visiontasks fit``)."""
    parser = argparse.ArgumentParser(
        prog="visiontasks demo",
        description="Train LeNet-5 on scikit-learn's bundled digits (offline), test the best checkpoint, "
                    "and print the test accuracy and where the run folder, checkpoint, metrics and "
                    "confusion matrix are. Works from any folder.",
        epilog="Any other option is passed to `visiontasks fit` with the demo's config, e.g. "
               "--trainer.accelerator gpu or --data.init_args.batch_size 64 (see visiontasks fit --help).",
        allow_abbrev=False,  # an abbreviation must not swallow an option meant for fit
    )
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs (default: the config's 30, about 1-2 minutes on a CPU; "
                             "1 for a quick look)")
    parser.add_argument("--output", default="runs",
                        help="folder the run folder is written under (default: ./runs)")
    return parser


def demo_config() -> Traversable:
    """The demo's config, a file of the installed package."""
    return resources.files("visiontasks.commands").joinpath(CONFIG_NAME)


def main(argv: list[str]) -> int:
    args, rest = build_parser().parse_known_args(argv)
    if args.epochs is not None and args.epochs < 1:
        raise InvalidInputError(f"--epochs must be at least 1, got {args.epochs}")
    from visiontasks.lightning_cli import build_cli

    # the run is named after the config even where as_file gives a temporary copy of another name
    overrides = ["--trainer.default_root_dir", args.output, "--run_name", Path(CONFIG_NAME).stem]
    if args.epochs is not None:
        overrides += ["--trainer.max_epochs", str(args.epochs)]
    start = time.perf_counter()
    with ExitStack() as stack:  # a real file path even if the package is zipped
        config = stack.enter_context(resources.as_file(demo_config()))
        cli = build_cli(["fit", "--config", str(config), *overrides, *rest])
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
