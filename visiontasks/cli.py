"""The ``visiontasks`` command.

``visiontasks fit|validate|test|predict --config FILE``: LightningCLI in subclass mode (any
:class:`~visiontasks.tasks.BaseTask` as ``model``, any LightningDataModule as ``data``), with run
folders under ``runs/``, a CSV logger (and TensorBoard when installed), checkpoints on the task's
monitored metric plus ``last.ckpt`` (``--ckpt_path last`` resumes), a progress bar, and the task's
output callbacks (``visiontasks.outputs.default_callbacks``: predictions, figures, tables).

Other subcommands are plain modules ``visiontasks.commands.<name>`` with ``main(argv) -> int``:
``summary`` (per-layer table of a backbone), ``proposals`` and ``benchmark`` (detection).

This module imports no torch and no Lightning: ``visiontasks --help`` prints :func:`overview` at
once, and the subcommands import only what they use. The LightningCLI subclass lives in
:mod:`visiontasks.lightning_cli` (``VisionCLI`` and :func:`build_cli` stay importable from here).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

import visiontasks  # noqa: F401  (sets NO_ALBUMENTATIONS_UPDATE before albumentations loads)
from visiontasks.errors import find_user_error, user_message

# the run-folder helpers live in visiontasks.runs (lightning_cli imports them from there, so cli and
# lightning_cli do not import each other at module level); the old private names stay importable
from visiontasks.runs import config_stem as _config_stem  # noqa: F401
from visiontasks.runs import resolve_checkpoint as _resolve_checkpoint  # noqa: F401
from visiontasks.runs import run_version as _run_version  # noqa: F401

if TYPE_CHECKING:
    from visiontasks.lightning_cli import VisionCLI

EXTRA_COMMANDS = {
    "demo": "visiontasks.commands.demo",
    "summary": "visiontasks.commands.summary",
    "proposals": "visiontasks.commands.proposals",
    "benchmark": "visiontasks.commands.benchmark",
    "evaluate": "visiontasks.commands.evaluate",
    "export-backbone": "visiontasks.commands.export_backbone",
    "check": "visiontasks.commands.check",
    "export": "visiontasks.commands.export",
    "optimize-data": "visiontasks.commands.optimize_data",
}


def build_cli(args: list[str] | None = None, run: bool = True) -> VisionCLI:
    """The LightningCLI of ``fit|validate|test|predict`` (see :mod:`visiontasks.lightning_cli`)."""
    from visiontasks.lightning_cli import build_cli as _build

    return _build(args, run)


def __getattr__(name: str) -> Any:
    # ``visiontasks.cli.VisionCLI`` stays importable; it lives apart so that ``visiontasks --help``
    # and the plain subcommands do not import Lightning (seconds of start-up)
    if name == "VisionCLI":
        from visiontasks.lightning_cli import VisionCLI

        return VisionCLI
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# One line per subcommand for ``visiontasks --help`` (LightningCLI's own help lists only its four).
COMMAND_HELP = {
    "fit": "train a model from a YAML config (--config FILE; --ckpt_path last resumes)",
    "validate": "score a checkpoint on the validation split (--ckpt_path best|last|FILE)",
    "test": "score a checkpoint on the test split and write its tables and figures",
    "predict": "write a checkpoint's predictions: on the config's predict split, or on images without a "
               "config (--ckpt_path X --source PATH|DIR|GLOB)",
    "demo": "train LeNet-5 on scikit-learn's digits, test it, print where the run is (any folder; --epochs N)",
    "summary": "a backbone's per-layer table: output shapes, parameters, multiply-adds",
    "proposals": "precompute selective-search proposals of a detection config and report recall",
    "benchmark": "time and score the detector generations (benchmark detectors --config FILE); the notes' claims (benchmark claims)",
    "evaluate": "score prediction files against ground truth (evaluate detection|keypoints|segmentation|classification)",
    "export-backbone": "write a checkpoint's backbone as a torchvision-layout state_dict (--ckpt_path X --output F)",
    "check": "read every image, mask and annotation of a config's data; list all problems, statistics, plots",
    "optimize-data": "write a config's data as litdata chunks (--config X --output DIR_OR_URL); train with data.init_args.streaming",
    "export": "a checkpoint as ONNX / TorchScript / torch.export, uint8 in, with a JSON (--ckpt_path X --format F)",
}


def overview() -> str:
    """The text of ``visiontasks --help``."""
    width = max(len(name) for name in COMMAND_HELP)
    lines = ["usage: visiontasks COMMAND [options]   (visiontasks COMMAND --help for its options)", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMAND_HELP.items()]
    lines += ["", "Mistakes in data or config print one line and exit with status 2; set VISIONTASKS_DEBUG=1",
              "to see the Python traceback."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The ``visiontasks`` command. A :class:`~visiontasks.errors.UserInputError` (bad data, bad
    config value, unknown name) is printed as one line with exit status 2."""
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(overview())
        return 0 if argv else 2
    try:
        return _run(argv, from_command_line)
    except Exception as err:
        mistake = find_user_error(err)
        if mistake is None or os.environ.get("VISIONTASKS_DEBUG", "") not in ("", "0"):
            raise  # a bug: keep its traceback
        print(f"visiontasks {argv[0]}: error: {user_message(mistake)}", file=sys.stderr)
        return 2
    finally:
        _close_process_group()


def _close_process_group() -> None:
    """Destroy the process group a DDP run set up (Lightning leaves it open): a gloo group left to
    the interpreter's exit can abort the process ("terminate called without an active exception",
    exit -6) while its worker threads still hold tensors, pytorch/pytorch#179291; seen once in CI
    at the end of a 2-process ``predict``."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _predicts_on_source(argv: list[str]) -> bool:
    """``predict --source ...`` (no data config): the checkpoint alone says how to read images."""
    return argv[0] == "predict" and any(a == "--source" or a.startswith("--source=") for a in argv[1:])


def _run(argv: list[str], from_command_line: bool) -> int:
    if _predicts_on_source(argv):
        from visiontasks.commands import predict_source

        return int(predict_source.main(argv[1:]) or 0)
    if argv[0] == "predict" and any(a in ("-h", "--help") for a in argv[1:]):
        from visiontasks.commands import predict_source

        print(predict_source.build_parser().format_help())
        print("Predict with a data config (LightningCLI; the options below):\n")
    if argv[0] in EXTRA_COMMANDS:
        try:
            module = importlib.import_module(EXTRA_COMMANDS[argv[0]])
        except ModuleNotFoundError as err:
            print(f"visiontasks {argv[0]}: not available ({err})", file=sys.stderr)
            return 2
        return int(module.main(argv[1:]) or 0)
    # from the console script LightningCLI reads sys.argv itself (given both, it warns on every run)
    build_cli(None if from_command_line else argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
