"""The ``visiontasks`` command.

``visiontasks fit|validate|test|predict --config FILE``: LightningCLI in subclass mode (any
:class:`~visiontasks.tasks.BaseTask` as ``model``, any LightningDataModule as ``data``), with run
folders under ``runs/``, a CSV logger (and TensorBoard when installed), checkpoints on the task's
monitored metric plus ``last.ckpt`` (``--ckpt_path last`` resumes), a progress bar, and the task's
output callbacks (``visiontasks.outputs.default_callbacks``: predictions, figures, tables).

Other subcommands are plain modules ``visiontasks.commands.<name>`` with ``main(argv) -> int``:
``summary`` (per-layer table of a backbone), ``proposals`` and ``benchmark`` (detection).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import visiontasks  # noqa: F401  (sets NO_ALBUMENTATIONS_UPDATE before albumentations loads)
from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from visiontasks.checkpoints import check_checkpoint_for
from visiontasks.errors import MissingFileError, find_user_error, user_message
from visiontasks.outputs import BestAndLastCheckpoint, default_callbacks
from visiontasks.tasks.base import BaseTask

EXTRA_COMMANDS = {
    "demo": "visiontasks.commands.demo",
    "summary": "visiontasks.commands.summary",
    "proposals": "visiontasks.commands.proposals",
    "benchmark": "visiontasks.commands.benchmark",
    "evaluate": "visiontasks.commands.evaluate",
    "export-backbone": "visiontasks.commands.export_backbone",
}


class VisionCLI(LightningCLI):
    """LightningCLI with our run-folder, logger and checkpoint defaults."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--run_name",
            type=str,
            default=None,
            help="Run folder name under trainer.default_root_dir (default: the config file's stem).",
        )
        # the data knows its classes: the model's num_classes is taken from the datamodule
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        # LightningCLI's hook (private, stable since 2.1) re-reads the model's hyper-parameters from
        # an explicit --ckpt_path: check first that the file is a checkpoint of the configured task
        # class, or a non-checkpoint dies inside torch and another task's class silently replaces ours.
        sub = self.config.get("subcommand")
        ckpt = self.config[sub].get("ckpt_path") if sub else None
        if ckpt and ckpt not in ("last", "best", "hpc"):
            check_checkpoint_for(ckpt, str(self.config[sub].model.class_path))
        super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        # fit writes config.yaml; validate/test/predict in the same run folder write their own
        self.save_config_kwargs["config_filename"] = (
            "config.yaml" if self.subcommand in (None, "fit") else f"config_{self.subcommand}.yaml"
        )
        self.save_config_kwargs["overwrite"] = True  # run folders are fresh, except on resume
        trainer = cfg.trainer
        name = cfg.get("run_name") or _config_stem(cfg) or "run"
        if trainer.get("logger") in (None, True):
            root = trainer.get("default_root_dir") or "runs"
            version = _run_version(Path(root) / name)
            ckpt = cfg.get("ckpt_path")
            if ckpt in ("last", "best"):
                # Resolve against the latest run of this config: a new process has no callback
                # state, so Lightning alone would find nothing. The run folder is reused.
                version, cfg.ckpt_path = _resolve_checkpoint(Path(root) / name, ckpt)
            elif ckpt and Path(ckpt).parent.name == "checkpoints" and Path(ckpt).parent.parent.parent == Path(root) / name:
                version = Path(ckpt).parent.parent.name
            run = Path(root) / name / version
            if self.subcommand not in (None, "fit"):
                version = f"{version}/{self.subcommand}"  # e.g. runs/NAME/version_0/test
            elif (run / "metrics.csv").is_file():
                # Resuming: Lightning's CSV logger would delete the earlier metrics; keep them.
                n = len(list(run.glob("metrics.part*.csv")))
                (run / "metrics.csv").rename(run / f"metrics.part{n}.csv")
            args = {"save_dir": root, "name": name, "version": version}
            loggers: list[dict[str, Any]] = [
                {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": args}
            ]
            if importlib.util.find_spec("tensorboard") is not None:
                loggers.append(
                    {
                        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                        "init_args": {**args, "default_hp_metric": False},
                    }
                )
            trainer.logger = loggers

    def instantiate_trainer(self, **kwargs: Any):  # noqa: ANN201 - Lightning's signature
        model = self.model
        extra = list(kwargs.pop("callbacks", []) or [])
        given = self._get(self.config_init, "trainer.callbacks", default=None) or []
        given = list(given) if isinstance(given, (list, tuple)) else [given]
        if not any(isinstance(c, ModelCheckpoint) for c in given):
            extra.append(
                BestAndLastCheckpoint(
                    monitor=model.monitor if isinstance(model, BaseTask) else None,
                    mode=model.monitor_mode if isinstance(model, BaseTask) else "min",
                )
            )
        wants_bar = self._get(self.config_init, "trainer.enable_progress_bar", default=None) is not False
        if wants_bar and not any(isinstance(c, TQDMProgressBar) for c in given):
            extra.append(TQDMProgressBar(refresh_rate=10))
        # the task's output files (predictions, figures, tables), unless the config lists that type
        extra += [c for c in default_callbacks(model) if not any(isinstance(g, type(c)) for g in given)]
        # `callbacks=` replaces the config's list in Lightning's instantiate_trainer: pass both
        return super().instantiate_trainer(callbacks=[*given, *extra], **kwargs)


_VERSION_ENV = "VISIONTASKS_RUN_VERSION"


def _run_version(folder: Path) -> str:
    """The run folder's version (``version_N``, the next free N), shared by all loggers so that logs,
    checkpoints and figures land in one folder. DDP child processes (``LOCAL_RANK`` > 0, started by
    rank 0 after it chose) inherit rank 0's choice through the environment."""
    if int(os.environ.get("LOCAL_RANK", "0")) > 0 and os.environ.get(_VERSION_ENV):
        return os.environ[_VERSION_ENV]
    taken = {p.name for p in folder.glob("version_*")} if folder.is_dir() else set()
    n = 0
    while f"version_{n}" in taken:
        n += 1
    os.environ[_VERSION_ENV] = f"version_{n}"
    return f"version_{n}"


def _resolve_checkpoint(folder: Path, which: str) -> tuple[str, str]:
    """``(version, path)`` of the newest run's ``last.ckpt`` or best checkpoint under ``folder``."""
    runs = sorted(
        (p for p in folder.glob("version_*") if (p / "checkpoints" / "last.ckpt").is_file()),
        key=lambda p: int(p.name.split("_")[1]) if p.name.split("_")[1].isdigit() else -1,
    )
    if not runs:
        raise MissingFileError(
            f"--ckpt_path {which}: no run with checkpoints/last.ckpt under {folder}; train first "
            "(visiontasks fit) or give a checkpoint file"
        )
    last = runs[-1] / "checkpoints" / "last.ckpt"
    if which == "last":
        return runs[-1].name, str(last)
    import torch

    state = torch.load(last, map_location="cpu", weights_only=False).get("callbacks", {})
    for key, value in state.items():
        if key.startswith("ModelCheckpoint") and value.get("best_model_path"):
            best = Path(value["best_model_path"])
            if best.is_file():
                return runs[-1].name, str(best)
    return runs[-1].name, str(last)


def _config_stem(cfg: Any) -> str | None:
    paths = cfg.get("config") or []
    for p in reversed(paths):
        s = str(p)
        if s:
            return Path(s).stem
    return None


def build_cli(args: list[str] | None = None, run: bool = True) -> VisionCLI:
    return VisionCLI(
        model_class=BaseTask,
        datamodule_class=LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=SaveConfigCallback,
        trainer_defaults={"default_root_dir": "runs"},
        seed_everything_default=0,
        args=args,
        run=run,
        parser_kwargs={"parser_mode": "omegaconf"} if importlib.util.find_spec("omegaconf") else None,
    )


# One line per subcommand for ``visiontasks --help`` (LightningCLI's own help lists only its four).
COMMAND_HELP = {
    "fit": "train a model from a YAML config (--config FILE; --ckpt_path last resumes)",
    "validate": "score a checkpoint on the validation split (--ckpt_path best|last|FILE)",
    "test": "score a checkpoint on the test split and write its tables and figures",
    "predict": "run a checkpoint on the predict split and write predictions",
    "demo": "train LeNet-5 on scikit-learn's digits, test it, print where the run is",
    "summary": "a backbone's per-layer table: output shapes, parameters, multiply-adds",
    "proposals": "precompute selective-search proposals of a detection config and report recall",
    "benchmark": "time and score the detector generations (benchmark detectors --config FILE)",
    "evaluate": "score prediction files against ground truth (evaluate detection|segmentation|classification)",
    "export-backbone": "write a checkpoint's backbone as a torchvision-layout state_dict (--ckpt_path X --output F)",
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


def _run(argv: list[str], from_command_line: bool) -> int:
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
