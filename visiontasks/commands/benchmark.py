"""``visiontasks benchmark detectors --config FILE``: the generations of detectors (R-CNN, Fast R-CNN,
Faster R-CNN, YOLOv1, SSD) on one backbone, one dataset and one metric, in one table and one chart.

Configuration is jsonargparse, as for ``visiontasks fit``: the benchmark file is parsed and validated
by :func:`benchmark_parser` (``data`` is a ``DetectionDataModule`` class_path/init_args, each entry of
``detectors`` a :class:`DetectorEntry`, ``timing`` a :class:`Timing`), and every fit config it names
by :func:`fit_config_parser` (``model``: a ``DetectionTask`` whose optimizer and lr_scheduler are
instantiated as callables, as LightningCLI does; ``trainer``: Trainer options; the fit config's
``data`` and ``seed_everything`` are ignored). All fit configs and overrides are validated before the
first detector runs; an unknown key or a wrong type stops the command with jsonargparse's error.

For each detector named in the benchmark config it builds the ``DetectionTask`` from that detector's
own fit config, on the benchmark's single ``data`` section (the same images for all; the
``proposals`` entry is given only to the detectors that use proposals), then:

* loads the weights of ``checkpoint`` when given (and present), else trains with the fit config's
  ``trainer`` section (``train`` in the benchmark config, then in the detector's entry, override its
  keys, e.g. ``max_epochs``); ``model_overrides`` (benchmark-wide, then per entry) override the
  model's init_args (``num_classes`` is the data's unless overridden; a dict such as ``model_kwargs``
  is updated key by key);
* **parameters**: of the detector (backbone parts it does not use are not counted);
* **training time per epoch**: ``timing.train_batches`` timed training steps (forward, backward,
  optimizer step, the task's own training_step; after one warm-up step; a ``StepTimer`` callback on a
  CPU ``Trainer.fit`` of a copy of the task) times the number of batches in an epoch;
* **inference time per image**: ``timing.infer_images`` validation images, one at a time, in eval mode
  without autograd; for R-CNN and Fast R-CNN the selective-search time on the same images (computed
  afresh, one process, the datamodule's settings) is reported separately from the network time;
* **mAP50 and mAP** (COCO @[.5:.95]) from ``Trainer.validate`` on the validation split
  (``validate``, benchmark-wide then per entry, passes Trainer options such as
  ``limit_val_batches`` to that final validation).

Writes ``<output>/generations.md`` (markdown table), ``generations.png`` (chart) and
``generations.json``. ``timing.threads`` sets torch's thread count for the timings.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentError, ArgumentParser, Namespace

DESCRIPTION = ("The generations of detectors (R-CNN, Fast R-CNN, Faster R-CNN, YOLOv1, SSD) on one backbone, "
               "one dataset and one metric, in one table and one chart.")


def paper_label(model: str) -> str:
    """``"Faster R-CNN (2015)"``: the paper and year the registered detector ``model`` states (its
    class attributes ``paper`` and ``year``); the bare name for one that states none."""
    from visiontasks.heads.detector import DETECTORS, detector_paper

    if model not in DETECTORS:
        return model
    paper, year = detector_paper(model)
    return f"{paper} ({year})" if year else paper


def generation_order(model: str) -> tuple[int, str]:
    """Sort key of a table row: by publication year, then paper (Fast R-CNN before Faster R-CNN)."""
    from visiontasks.heads.detector import DETECTORS, detector_paper

    return detector_paper(model)[::-1] if model in DETECTORS else (10**4, model)


@dataclass
class DetectorEntry:
    """One detector of the benchmark.

    Args:
        config: its fit config (``visiontasks fit`` YAML: model, optimizer, trainer).
        checkpoint: weights to evaluate; trained here when not given or missing.
        train: Trainer options over the fit config's trainer section (after the benchmark's).
        validate: Trainer options for the final validation (after the benchmark's).
        model_overrides: over the model's init_args (after the benchmark's).
    """

    config: str
    checkpoint: str | None = None
    train: dict[str, Any] | None = None
    validate: dict[str, Any] | None = None
    model_overrides: dict[str, Any] | None = None


@dataclass
class Timing:
    """What the timings measure.

    Args:
        threads: torch threads for the timings (default: unchanged).
        train_batches: timed training steps (times batches per epoch = seconds per epoch).
        infer_images: validation images timed one by one.
    """

    threads: int | None = None
    train_batches: int = 5
    infer_images: int = 20


def benchmark_parser() -> ArgumentParser:
    """The benchmark file's schema (see configs/detection/generations_*.yaml)."""
    from visiontasks.data import DetectionDataModule

    parser = ArgumentParser(prog="visiontasks benchmark detectors", description=DESCRIPTION)
    parser.add_argument("--config", "-c", action=ActionConfigFile,
                        help="benchmark YAML (see configs/detection/generations_*.yaml)")
    parser.add_argument("--output", type=str, default="runs/generations",
                        help="output folder (given after --config, overrides the config's)")
    parser.add_argument("--title", type=str, default="detector generations", help="table and chart title")
    parser.add_subclass_arguments(DetectionDataModule, "data", required=True,
                                  help="the data of every detector (proposals only for those that use them)")
    parser.add_argument("--detectors", type=dict[str, DetectorEntry], required=True,
                        help="name -> DetectorEntry (config, checkpoint, train, validate, model_overrides)")
    parser.add_argument("--train", type=dict[str, Any] | None, default=None,
                        help="Trainer options over every fit config's trainer section")
    parser.add_argument("--validate", type=dict[str, Any] | None, default=None,
                        help="Trainer options for every final validation")
    parser.add_argument("--model_overrides", type=dict[str, Any] | None, default=None,
                        help="over every model's init_args")
    parser.add_argument("--timing", type=Timing, default=Timing())
    parser.add_argument("--only", type=str, nargs="+", default=None, help="run only these detector entries")
    return parser


def fit_config_parser() -> ArgumentParser:
    """A detector's fit config, the way LightningCLI reads it: ``model`` a ``DetectionTask``
    (optimizer and lr_scheduler become callables), ``trainer`` Trainer options (not instantiated);
    ``data`` and ``seed_everything`` accepted and ignored. Raises ``ArgumentError``."""
    from visiontasks.tasks import DetectionTask
    from visiontasks.trainer import VisionTrainer

    parser = ArgumentParser(prog="detector fit config", exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_subclass_arguments(DetectionTask, "model", required=True)
    parser.add_class_arguments(VisionTrainer, "trainer", instantiate=False)  # the CLI's: precision auto
    parser.add_argument("--data", type=dict[str, Any] | None, default=None, help="ignored")
    parser.add_argument("--seed_everything", type=int | bool | None, default=None, help="ignored")
    return parser


def _override_model(parser: ArgumentParser, cfg: Namespace, overrides: dict[str, Any] | None) -> Namespace:
    """``overrides`` over the model's init_args, validated; a dict argument (``model_kwargs``) is
    updated key by key rather than replaced."""
    if not overrides:
        return cfg
    current = cfg.model.init_args
    merged = {k: {**current[k], **v} if isinstance(v, dict) and isinstance(current.get(k), dict) else v
              for k, v in overrides.items()}
    return parser.parse_object({"model": {"init_args": merged}}, namespace=cfg)


def fit_config(parser: ArgumentParser, entry: DetectorEntry, bench: Namespace,
               num_classes: int | None = None) -> tuple[Namespace, dict[str, Any]]:
    """``entry``'s fit config with ``num_classes`` (the data's, as ``visiontasks fit`` links it), then
    the benchmark's, then the entry's ``model_overrides`` applied, and their ``train`` options
    (validated against the Trainer's signature)."""
    cfg = parser.parse_args(["--config", entry.config])
    data_classes = {"num_classes": num_classes} if num_classes is not None else None
    for overrides in (data_classes, bench.model_overrides, entry.model_overrides):
        cfg = _override_model(parser, cfg, overrides)
    train = {**(bench.train or {}), **(entry.train or {})}
    # Validation only: the options go to the Trainer as written, because jsonargparse reads an int
    # for a ``float | int`` option as a float (``limit_train_batches: 1``, one batch, would become
    # 1.0, all batches).
    parser.parse_object({"trainer": train}, namespace=cfg)
    return cfg, train


def build_datamodule(parser: ArgumentParser, cfg: Namespace, with_proposals: bool) -> Any:
    """A fresh data module from the parsed benchmark config's ``data``; ``proposals`` dropped unless
    ``with_proposals``."""
    cfg = cfg.clone()
    if not with_proposals:
        cfg.data.init_args.proposals = None
    return parser.instantiate(cfg).data


def _train_time_per_epoch(task: Any, dm: Any, batches: int) -> tuple[float, int]:
    """Seconds per training epoch, from ``batches`` steps timed by a :class:`StepTimer` (after one
    warm-up step; a ``Trainer.fit`` of a copy of ``task`` on the CPU, as the other timings, with
    no validation, logger or checkpoint) times the number of batches in an epoch; also returns that
    number."""
    import tempfile

    import lightning.pytorch as pl
    import torch

    from visiontasks.commands.step_timer import StepTimer

    per_epoch = len(dm.train_dataloader())
    timer = StepTimer(warmup=1)
    with tempfile.TemporaryDirectory() as root:
        trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=batches + 1, max_epochs=-1,
                             limit_val_batches=0, num_sanity_val_steps=0, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             callbacks=[timer], default_root_dir=root)
        trainer.fit(copy.deepcopy(task), datamodule=dm)
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return sum(timer.times) / len(timer.times) * per_epoch, per_epoch


def _inference_times(task: Any, dm: Any, images: int) -> tuple[float, float]:
    """(network ms/image, proposal ms/image) over the first ``images`` validation images, one by one."""
    import torch

    from visiontasks.data.io import read_image
    from visiontasks.data.proposals import selective_search

    dataset = dm.datasets["val"]
    n = min(images, len(dataset))
    model = task.detector.eval()
    net, prop = [], []
    source = getattr(dataset, "proposal_source", None)
    with torch.no_grad():
        for i in range(-1, n):  # -1: warm-up on image 0
            image, target = dataset[max(i, 0)]
            props = [target["proposals"]] if model.needs_proposals else None
            start = time.perf_counter()
            model([image], None, props)
            if i >= 0:
                net.append(time.perf_counter() - start)
            if i >= 0 and model.needs_proposals and source is not None:
                raw = read_image(target["path"])
                start = time.perf_counter()
                selective_search(raw, source.settings)
                prop.append(time.perf_counter() - start)
    mean = lambda v: 1000 * sum(v) / len(v) if v else 0.0  # noqa: E731
    return mean(net), mean(prop)


def _validate(task: Any, dm: Any, trainer_cfg: dict, validate_cfg: dict | None) -> dict[str, float]:
    from visiontasks.trainer import VisionTrainer

    kw = {k: trainer_cfg[k] for k in ("accelerator", "precision") if k in trainer_cfg}
    kw.update(validate_cfg or {})
    kw["devices"] = 1
    trainer = VisionTrainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, **kw)
    return {k: float(v) for k, v in trainer.validate(task, datamodule=dm, verbose=False)[0].items()}


def _fit(task: Any, dm: Any, trainer_cfg: dict, out_dir: Path, name: str) -> Path:
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from visiontasks.trainer import VisionTrainer

    cfg = {k: v for k, v in trainer_cfg.items() if k not in ("logger", "callbacks", "default_root_dir")}
    # one device: `devices: auto` on a multi-GPU machine would relaunch this whole command per GPU
    cfg.update(devices=1, strategy="auto")
    ckpt = ModelCheckpoint(dirpath=out_dir / name / "checkpoints", save_last=True, save_top_k=0)
    trainer = VisionTrainer(logger=CSVLogger(out_dir, name=name), callbacks=[ckpt],
                            default_root_dir=out_dir, **cfg)
    trainer.fit(task, datamodule=dm)
    return out_dir / name / "checkpoints" / "last.ckpt"


def run_detector(name: str, entry: DetectorEntry, bench: Namespace, task: Any, dm: Any,
                 trainer_cfg: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Load or train ``task`` on ``dm``, then measure it: one row of the table."""
    import torch

    dm.prepare_data()
    dm.setup("fit")
    checkpoint = entry.checkpoint
    trained_here = False
    if checkpoint and Path(checkpoint).is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        task.load_state_dict(state.get("state_dict", state))
    else:
        if checkpoint:
            print(f"{name}: checkpoint {checkpoint} not found: training", file=sys.stderr)
        checkpoint = str(_fit(task, dm, trainer_cfg, out_dir, name))
        trained_here = True
    timing = bench.timing
    previous = torch.get_num_threads()
    if timing.threads:
        torch.set_num_threads(timing.threads)
    try:
        train_s, batches = _train_time_per_epoch(task, dm, timing.train_batches)
        net_ms, prop_ms = _inference_times(task, dm, timing.infer_images)
    finally:
        torch.set_num_threads(previous)
    metrics = _validate(task, dm, trainer_cfg, {**(bench.validate or {}), **(entry.validate or {})})
    return {
        "name": name, "model": task.hparams.model, "backbone": task.hparams.backbone,
        "params": int(sum(p.numel() for p in task.detector.parameters())),
        "train_s_per_epoch": train_s, "train_batches_per_epoch": batches,
        "proposal_ms": prop_ms, "network_ms": net_ms, "total_ms": prop_ms + net_ms,
        "mAP50": metrics.get("val/mAP50", float("nan")), "mAP": metrics.get("val/mAP", float("nan")),
        "checkpoint": checkpoint, "trained_here": trained_here,
    }


def markdown_table(rows: list[dict[str, Any]]) -> str:
    ref = next((r["total_ms"] for r in rows if r["model"] == "rcnn"), None)
    head = ["detector", "backbone", "params (M)", "train s/epoch", "proposals ms/img", "network ms/img",
            "total ms/img", "test speed-up vs R-CNN", "mAP50", "mAP"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        speed = f"{ref / r['total_ms']:.1f}x" if ref and r["total_ms"] > 0 else "-"
        lines.append("| " + " | ".join([
            paper_label(r["model"]), r["backbone"], f"{r['params'] / 1e6:.2f}",
            f"{r['train_s_per_epoch']:.1f}", f"{r['proposal_ms']:.1f}" if r["proposal_ms"] else "0 (in network)",
            f"{r['network_ms']:.1f}", f"{r['total_ms']:.1f}", speed, f"{r['mAP50']:.3f}", f"{r['mAP']:.3f}",
        ]) + " |")
    return "\n".join(lines)


def chart(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [paper_label(r["model"]).split(" (")[0] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    x = range(len(rows))
    axes[0].bar(x, [r["proposal_ms"] for r in rows], label="selective search", color="#d98c3f")
    axes[0].bar(x, [r["network_ms"] for r in rows], bottom=[r["proposal_ms"] for r in rows],
                label="network", color="#3f7fd9")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("ms per image (log)")
    axes[0].set_title("inference time per image")
    axes[0].legend()
    axes[1].bar(x, [r["train_s_per_epoch"] for r in rows], color="#6aa84f")
    axes[1].set_ylabel("seconds")
    axes[1].set_title("training time per epoch")
    w = 0.38
    axes[2].bar([i - w / 2 for i in x], [r["mAP50"] for r in rows], w, label="mAP50", color="#674ea7")
    axes[2].bar([i + w / 2 for i in x], [r["mAP"] for r in rows], w, label="mAP", color="#c27ba0")
    axes[2].set_ylim(0, 1)
    axes[2].set_title("accuracy (val)")
    axes[2].legend()
    for ax in axes:
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, rotation=15)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fit_configs(parser: ArgumentParser, fit_parser: ArgumentParser, bench: Namespace,
                 names: list[str], num_classes: int | None = None) -> dict[str, tuple[Namespace, dict[str, Any]]]:
    """:func:`fit_config` for each entry in ``names``, all validated before anything runs; an entry
    whose config file is missing is skipped with a message."""
    out = {}
    for name in names:
        entry = bench.detectors[name]
        if not Path(entry.config).is_file():
            print(f"{name}: config {entry.config} not found: skipped", file=sys.stderr)
            continue
        try:
            out[name] = fit_config(fit_parser, entry, bench, num_classes)
        except ArgumentError as err:
            parser.error(f"detectors.{name} (fit config {entry.config}): {err}")
    return out


def detectors_main(argv: list[str]) -> int:
    parser = benchmark_parser()
    cfg = parser.parse_args(argv)
    bench = parser.instantiate(cfg)
    out_dir = Path(bench.output)
    names = [n for n in bench.detectors if bench.only is None or n in bench.only]
    if not names:
        print(f"no detectors to run (config has {list(bench.detectors)})", file=sys.stderr)
        return 2
    fit_parser = fit_config_parser()
    # the data states the class count (read from its class table only), as in `visiontasks fit`
    num_classes = build_datamodule(parser, cfg, with_proposals=False).num_classes
    fit_cfgs = _fit_configs(parser, fit_parser, bench, names, num_classes)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "generations.json"
    done = {r["name"]: r for r in json.loads(json_path.read_text())} if json_path.is_file() else {}
    for name, (fit_cfg, train) in fit_cfgs.items():
        print(f"== {name}", file=sys.stderr)
        start = time.perf_counter()
        fit = fit_parser.instantiate(fit_cfg)  # the task; the trainer section stays Trainer kwargs
        dm = build_datamodule(parser, cfg, with_proposals=fit.model.detector.needs_proposals)
        trainer_cfg = {**fit.trainer.as_dict(), **train}
        done[name] = run_detector(name, bench.detectors[name], bench, fit.model, dm, trainer_cfg, out_dir)
        done[name]["benchmark_s"] = time.perf_counter() - start
        json_path.write_text(json.dumps(list(done.values()), indent=1))  # after each: resumable
    rows = sorted(done.values(), key=lambda r: generation_order(r["model"]))
    table = markdown_table(rows)
    (out_dir / "generations.md").write_text(f"# {bench.title}\n\n{table}\n")
    chart(rows, out_dir / "generations.png", bench.title)
    print(table)
    print(f"wrote {out_dir / 'generations.md'}, {out_dir / 'generations.png'}, {json_path}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: visiontasks benchmark detectors --config FILE [--only NAME ...] [--output DIR]\n"
              "       visiontasks benchmark claims [--only NAME ...] [--budget small|full] [--output DIR]")
        return 0 if argv else 2
    if argv[0] == "claims":
        from visiontasks.commands.claims import main as claims_main

        return claims_main(argv[1:])
    if argv[0] != "detectors":
        print(f"visiontasks benchmark: unknown benchmark {argv[0]!r}; available: detectors, claims", file=sys.stderr)
        return 2
    return detectors_main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
