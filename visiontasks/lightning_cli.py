"""The LightningCLI behind ``visiontasks fit|validate|test|predict`` (imported only by those
commands: :mod:`visiontasks.cli` itself imports no Lightning, so ``visiontasks --help`` and the plain
subcommands start without it)."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import io
import re
import sys
from pathlib import Path
from typing import Any, Callable, Optional

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from jsonargparse import ArgumentParser
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from visiontasks.checkpoints import check_checkpoint_for
from visiontasks.configs import parser_mode
from visiontasks.errors import InvalidInputError, did_you_mean
from visiontasks.outputs import BestAndLastCheckpoint, default_callbacks
from visiontasks.runs import agree_run_folder, config_stem, is_first_process, resolve_checkpoint, run_version
from visiontasks.schedulers import parse_duration
from visiontasks.tasks.base import BaseTask
from visiontasks.tasks.facets import enable_cam
from visiontasks.trainer import VisionTrainer


class _AgreeRunFolder(Callback):
    """Every process writes into rank 0's run folder (see :func:`visiontasks.runs.agree_run_folder`)."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        agree_run_folder(trainer)


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

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        # LightningCLI's hook (private, stable since 2.0) building one subcommand's parser: predict's
        # own options, read by before_predict (Trainer.predict is not given them)
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "predict":
            parser.add_argument("--cam", type=bool, default=False,
                                help="Classification: also write <stem>_cam.png, the class activation map of the "
                                     "predicted class over each image (docs/cam.md).")
            parser.add_argument("--cam_class", type=Optional[str], default=None,
                                help="The class whose map --cam draws (implies --cam true).")
        return parser

    def before_predict(self) -> None:
        cfg = self.config["predict"]
        enable_cam(self.model, cfg.get("cam", False), cfg.get("cam_class"))

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        # jsonargparse reports a bad option as the whole usage (50+ lines) and a nested "Does not
        # validate against any of the Union subtypes" report, then exits: keep its report, and raise
        # it as one line naming the option instead (``--help`` and a good parse are untouched).
        report = io.StringIO()
        try:
            with contextlib.redirect_stderr(report):
                super().parse_arguments(parser, args)
        except SystemExit as stop:
            if stop.code in (0, None) or "error:" not in report.getvalue():
                sys.stderr.write(report.getvalue())
                raise
            text = report.getvalue()
            raise InvalidInputError(self._unknown_key_line(text, args) or parser_error_line(text)) from None
        sys.stderr.write(report.getvalue())

    def _unknown_key_line(self, report: str, args: Any) -> str | None:
        """The one line for a misspelt key (``batchsize``), with the closest keys jsonargparse knows at
        that level; None when ``report`` is about something else."""
        tokens = [str(a) for a in (sys.argv[1:] if args is None else args)] if not isinstance(args, dict) else []
        parsers = getattr(self, "_subcommand_parsers", {})

        def subcommand_keys(sub: str) -> list[str]:
            try:
                return list(self._parser(sub).get_defaults(skip_validation=True).keys())
            except Exception:  # noqa: BLE001 - no hint rather than a second error
                return []

        sub = next((t for t in tokens if t in parsers), None)
        return unknown_key_line(report, tokens, subcommand_keys, sub)

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
        if isinstance(trainer.get("max_time"), str):  # Lightning's own message names no option
            try:
                parse_duration(trainer.max_time)
            except InvalidInputError:
                raise InvalidInputError(f"trainer.max_time={trainer.max_time!r}: give a DD:HH:MM:SS string, "
                                        "e.g. 00:00:10:00, or a mapping such as {hours: 1}") from None
        name = cfg.get("run_name") or config_stem(cfg) or "run"
        if trainer.get("logger") in (None, True):
            root = trainer.get("default_root_dir") or "runs"
            version = run_version(Path(root) / name)
            ckpt = cfg.get("ckpt_path")
            if ckpt in ("last", "best"):
                # Resolve against the latest run of this config: a new process has no callback
                # state, so Lightning alone would find nothing. The run folder is reused.
                version, cfg.ckpt_path = resolve_checkpoint(Path(root) / name, ckpt)
            elif ckpt and Path(ckpt).parent.name == "checkpoints" and Path(ckpt).parent.parent.parent == Path(root) / name:
                version = Path(ckpt).parent.parent.name
            run = Path(root) / name / version
            if self.subcommand not in (None, "fit"):
                version = f"{version}/{self.subcommand}"  # e.g. runs/NAME/version_0/test
            elif (run / "metrics.csv").is_file() and is_first_process():
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

    def instantiate_classes(self) -> None:
        # model.num_classes is linked from the data (LightningCLI's link silently overrides a value the
        # config gives): a value that differs from both the task's default and the data is a mistake.
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        given, default = _given_num_classes(cfg)
        super().instantiate_classes()
        classes = getattr(self.datamodule, "num_classes", None)
        if given is not None and given != default and classes is not None and given != classes:
            names = list(getattr(self.datamodule, "class_names", []))[:10]
            shown = ", ".join(map(str, names)) + (", ..." if classes > 10 else "")
            raise InvalidInputError(
                f"model.init_args.num_classes={given}, but the data has {classes} classes ({shown}); remove "
                "num_classes from the model section: it is taken from the data"
            )

    def instantiate_trainer(self, **kwargs: Any):  # noqa: ANN201 - Lightning's signature
        model = self.model
        extra = list(kwargs.pop("callbacks", []) or [])
        given = self._get(self.config_init, "trainer.callbacks", default=None) or []
        given = list(given) if isinstance(given, (list, tuple)) else [given]
        wants_checkpoints = self._get(self.config_init, "trainer.enable_checkpointing", default=None) is not False
        if wants_checkpoints and not any(isinstance(c, ModelCheckpoint) for c in given):
            extra.append(
                BestAndLastCheckpoint(
                    monitor=model.monitor if isinstance(model, BaseTask) else None,
                    mode=model.monitor_mode if isinstance(model, BaseTask) else "min",
                )
            )
        wants_bar = self._get(self.config_init, "trainer.enable_progress_bar", default=None) is not False
        if wants_bar and not any(isinstance(c, TQDMProgressBar) for c in given):
            extra.append(TQDMProgressBar(refresh_rate=10))
        extra.append(_AgreeRunFolder())  # processes started by torchrun/srun chose their folders apart
        # the task's output files (predictions, figures, tables), unless the config lists that type
        extra += [c for c in default_callbacks(model) if not any(isinstance(g, type(c)) for g in given)]
        # `callbacks=` replaces the config's list in Lightning's instantiate_trainer: pass both
        return super().instantiate_trainer(callbacks=[*given, *extra], **kwargs)


# lines of jsonargparse's report that say where, not what is wrong
_NOT_DETAIL = re.compile(
    r"^(Does not validate|Subtypes:|Errors:|Given value|Expected a <class 'NoneType'>|Problem with given class_path|tip:)"
)


def _report_option(text: str) -> str:
    """The option a jsonargparse report is about, from its nested ``Parser key "..."`` lines
    (``model.init_args.lr_scheduler``)."""
    keys: list[str] = []
    for line in text.strip().splitlines():
        found = re.findall(r'Parser key "([^"]+)"', line)
        if found:
            if keys and not found[0].startswith(keys[-1]):
                keys.append("init_args")
            keys += found
    return ".".join(keys).replace("init_args.init_args", "init_args")


def parser_error_line(report: str) -> str:
    """One line from jsonargparse's error report: the option (``data.init_args.batch_size``) and the
    innermost reason (``Expected a <class 'int'>. Got value: abc``), with where to look for help."""
    text = report.split("error:", 1)[1] if "error:" in report else report
    reason = ""
    for raw in text.strip().splitlines():
        line = raw.strip().lstrip("- ").strip()
        if line and re.search(r'Parser key "[^"]+"', line):
            line = re.split(r'Parser key "[^"]+":?', line)[-1].strip()
        if line and not reason and not _NOT_DETAIL.match(line):
            reason = line
    reason = re.sub(r"(Got value: [^.]*)\. Got value: .*", r"\1", reason or text.strip().splitlines()[0])
    given = re.search(r"Given value: (.*)", text)
    if "Got value" not in reason and given and "NestedArg" not in given.group(1):
        reason += f"; got {given.group(1).strip()}"
    option = _report_option(text)
    where = f"option --{option}: " if option else ""
    return f"{where}{reason} (see --help for the accepted options)"


_CLASS_OPTION = re.compile(r"Option '([^']+)' is not accepted")
_SUBCOMMAND_OPTION = re.compile(r"Subcommand '([^']+)' does not accept option '([^']+)'")
_UNRECOGNIZED = re.compile(r"unrecognized arguments: (--\S+)")
_LISTED_KEYS = 25  # at most this many accepted keys named when none is close


def unknown_key_line(report: str, tokens: list[str], subcommand_keys: Callable[[str], list[str]],
                     subcommand: str | None) -> str | None:
    """One line for jsonargparse's report of an unknown key: where it was given (``option --KEY`` or
    ``FILE, line N: KEY``), the level it is unknown at, and the close keys at that level
    (``difflib``), else the accepted ones. ``subcommand_keys(name)`` lists a subcommand's keys."""
    text = report.split("error:", 1)[1] if "error:" in report else report
    found = _class_unknown_key(text) or _subcommand_unknown_key(text, subcommand_keys, subcommand)
    if found is None:
        return None
    level, name, accepted, owner = found
    full = f"{level}.{name}" if level else name
    given = _cli_option(tokens, full)
    if given is not None:
        where, show = f"option --{given}", (lambda key: f"--{level + '.' if level else ''}{key}")
    else:
        line = _config_line(tokens, full)
        where = f"{line}: {full}" if line else f"option --{full}"
        show = lambda key: f"{level + '.' if level else ''}{key}"  # noqa: E731
    hint = did_you_mean(name, accepted, show)
    if not hint:
        listed = ", ".join(accepted[:_LISTED_KEYS]) + (", ..." if len(accepted) > _LISTED_KEYS else "")
        hint = f"; no accepted key is close (accepted: {listed})"
    return f"{where} is not accepted by {owner}{hint} (see --help for the accepted options)"


def _class_unknown_key(text: str) -> tuple[str, str, list[str], str] | None:
    """``(level, key, keys of the class at that level, class name)`` for "Option 'KEY' is not
    accepted" inside a class's ``init_args`` (``model``, ``data``, a scheduler), else None."""
    match = _CLASS_OPTION.search(text)
    if match is None:
        return None
    line_end = text.find("\n", match.end())
    same_line = re.search(r"class_path='([^']+)'", text[match.end(): None if line_end < 0 else line_end])
    before = re.findall(r"class_path '([^']+)'", text[: match.start()])
    class_path = same_line.group(1) if same_line else (before[-1] if before else None)
    if class_path is None:
        return None
    try:
        module, _, name = class_path.rpartition(".")
        keys = ArgumentParser(exit_on_error=False).add_class_arguments(
            getattr(importlib.import_module(module), name), fail_untyped=False, sub_configs=True)
    except Exception:  # noqa: BLE001 - a class jsonargparse cannot read: no hint rather than a second error
        return None
    option = _report_option(text[: match.start()])
    level = f"{option}.init_args" if option else "init_args"
    key = match.group(1)
    if "." in key and key.split(".", 1)[0] not in keys:
        key = key.split(".", 1)[0]
    return level, key, list(keys), name


def _subcommand_unknown_key(text: str, subcommand_keys: Callable[[str], list[str]],
                            subcommand: str | None) -> tuple[str, str, list[str], str] | None:
    """The same for a key no option of the subcommand has (``trainer.max_epoch`` in a config, or
    ``--trainr.max_epochs`` on the command line): the first part of it that is unknown."""
    match = _SUBCOMMAND_OPTION.search(text)
    if match is not None:
        subcommand, given = match.group(1), match.group(2)
    else:
        unknown = _UNRECOGNIZED.search(text)
        if unknown is None or subcommand is None:
            return None
        given = unknown.group(1)[2:].split("=", 1)[0]
    keys = subcommand_keys(subcommand)
    branches = {k.rsplit(".", i)[0] for k in keys for i in range(1, k.count(".") + 1)}
    level = ""
    for part in given.split("."):
        here = f"{level}.{part}" if level else part
        if here in keys:
            return None  # below a key that takes a value: jsonargparse's own report says more
        if here not in branches:
            start = f"{level}." if level else ""
            accepted = sorted({k[len(start):].split(".", 1)[0] for k in [*keys, *branches] if k.startswith(start)})
            owner = f"the {level!r} section of {subcommand!r}" if level else f"the {subcommand!r} command"
            return level, part, accepted, owner
        level = here
    return None


def _cli_option(tokens: list[str], full: str) -> str | None:
    """The command-line option, as typed, that gave the key ``full`` (``init_args.`` may be left out)."""
    plain = full.replace("init_args.", "")
    for token in tokens:
        if token.startswith("--"):
            key = token[2:].split("=", 1)[0]
            if key.replace("init_args.", "") == plain:
                return key
    return None


def _config_line(tokens: list[str], full: str) -> str | None:
    """``FILE, line N`` of the key ``full`` in a ``--config`` file among ``tokens`` (YAML's own
    positions, ``init_args`` optional), else None."""
    import yaml

    paths = [t.split("=", 1)[1] for t in tokens if t.startswith("--config=")]
    paths += [tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t == "--config"]
    for path in paths:
        try:
            node = yaml.compose(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        line = None
        for part in full.split("."):
            if not isinstance(node, yaml.MappingNode):
                line = None
                break
            hit = next(((k, v) for k, v in node.value if getattr(k, "value", None) == part), None)
            if hit is None:
                if part == "init_args":
                    continue
                line = None
                break
            line, node = hit[0].start_mark.line + 1, hit[1]
        if line is not None:
            return f"{path}, line {line}"
    return None


def _given_num_classes(cfg: Any) -> tuple[Any, Any]:
    """``(model.init_args.num_classes in the config, the task class's default for it)``."""
    model = cfg.get("model")
    if model is None or not model.get("class_path"):
        return None, None
    given = (model.get("init_args") or {}).get("num_classes")
    try:
        module, _, name = str(model.class_path).rpartition(".")
        param = inspect.signature(getattr(importlib.import_module(module), name)).parameters.get("num_classes")
    except (ImportError, AttributeError, ValueError, TypeError):
        return None, None
    return given, (param.default if param is not None else None)


# ``visiontasks.tasks`` and ``visiontasks.data`` import their classes on first use; jsonargparse
# finds a class given by bare name (``--model DetectionTask``) and lists "known subclasses" in the
# help only among classes already imported, so those two cases import them all first. The one list
# of built-in classes is each package's ``_LAZY`` table (name -> submodule).
def _builtin_classes() -> dict[str, str]:
    """``{class name: module}`` of every built-in task and datamodule."""
    from visiontasks import data, tasks

    return {name: f"{package.__name__}.{module}" for package in (tasks, data) for name, module in package._LAZY.items()}


_BARE_NAME = re.compile(r"(?<![\w.])(" + "|".join(sorted(_builtin_classes(), key=len, reverse=True)) + r")\b")


def _import_builtins_if_needed(args: list[str] | None) -> None:
    """Import every built-in task and datamodule when ``args`` (or a ``--config`` file they name)
    asks for help or names one of them without its module path."""
    tokens = [str(a) for a in (sys.argv[1:] if args is None else args)]
    texts = list(tokens)
    for i, token in enumerate(tokens):
        path = token.split("=", 1)[1] if token.startswith("--config=") else None
        if token == "--config" and i + 1 < len(tokens):
            path = tokens[i + 1]
        if path and Path(path).is_file():
            try:
                texts.append(Path(path).read_text(encoding="utf-8", errors="replace"))
            except OSError:
                pass  # LightningCLI reports an unreadable config itself
    wants_help = any(t in ("-h", "--help") or t.endswith(".help") for t in tokens)
    if wants_help or any(_BARE_NAME.search(t) for t in texts):
        for module in sorted(set(_builtin_classes().values())):
            importlib.import_module(module)


def build_cli(args: list[str] | None = None, run: bool = True) -> VisionCLI:
    _import_builtins_if_needed(args)
    return VisionCLI(
        model_class=BaseTask,
        datamodule_class=LightningDataModule,
        trainer_class=VisionTrainer,  # precision: auto (see visiontasks.trainer)
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=SaveConfigCallback,
        trainer_defaults={"default_root_dir": "runs"},
        seed_everything_default=0,
        args=args,
        run=run,
        parser_kwargs={"parser_mode": parser_mode()},
    )
