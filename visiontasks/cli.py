"""The ``visiontasks`` command.

``visiontasks fit|validate|test|predict --config FILE``: LightningCLI in subclass mode (any
:class:`~visiontasks.tasks.BaseTask` as ``model``, any LightningDataModule as ``data``), with run
folders under ``runs/``, a CSV logger (and TensorBoard when installed), checkpoints on the task's
monitored metric plus ``last.ckpt`` (``--ckpt_path last`` resumes), and a progress bar.

Other subcommands are plain modules ``visiontasks.commands.<name>`` with ``main(argv) -> int``:
``summary`` (per-layer table of a backbone), ``proposals`` and ``benchmark`` (detection).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import visiontasks  # noqa: F401  (sets NO_ALBUMENTATIONS_UPDATE before albumentations loads)
from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from visiontasks.tasks.base import BaseTask

EXTRA_COMMANDS = {
    "summary": "visiontasks.commands.summary",
    "proposals": "visiontasks.commands.proposals",
    "benchmark": "visiontasks.commands.benchmark",
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

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        trainer = cfg.trainer
        name = cfg.get("run_name") or _config_stem(cfg) or "run"
        if trainer.get("logger") in (None, True):
            root = trainer.get("default_root_dir") or "runs"
            loggers: list[dict[str, Any]] = [
                {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": root, "name": name}}
            ]
            if importlib.util.find_spec("tensorboard") is not None:
                loggers.append(
                    {
                        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                        "init_args": {"save_dir": root, "name": name, "default_hp_metric": False},
                    }
                )
            trainer.logger = loggers

    def instantiate_trainer(self, **kwargs: Any):  # noqa: ANN201 - Lightning's signature
        model = self.model
        extra = list(kwargs.pop("callbacks", []) or [])
        given = self._get(self.config_init, "trainer.callbacks", default=None) or []
        if not any(isinstance(c, ModelCheckpoint) for c in given):
            extra.append(
                ModelCheckpoint(
                    monitor=model.monitor if isinstance(model, BaseTask) else None,
                    mode=model.monitor_mode if isinstance(model, BaseTask) else "min",
                    filename="best-epoch{epoch}-step{step}",
                    auto_insert_metric_name=False,
                    save_last=True,
                )
            )
        if not any(isinstance(c, TQDMProgressBar) for c in given):
            extra.append(TQDMProgressBar(refresh_rate=10))
        return super().instantiate_trainer(callbacks=extra, **kwargs)


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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in EXTRA_COMMANDS:
        try:
            module = importlib.import_module(EXTRA_COMMANDS[argv[0]])
        except ModuleNotFoundError as err:
            print(f"visiontasks {argv[0]}: not available ({err})", file=sys.stderr)
            return 2
        return int(module.main(argv[1:]) or 0)
    build_cli(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
