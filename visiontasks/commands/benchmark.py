"""``visiontasks benchmark detectors --config FILE``: four generations of detectors (R-CNN, Fast R-CNN,
Faster R-CNN, YOLOv1) on one backbone, one dataset and one metric, in one table and one chart.

For each detector named in the benchmark config it builds the ``DetectionTask`` from that detector's
own fit config (model section: backbone, model_kwargs, optimizer), on the benchmark's single ``data``
section (the same images for all; the ``proposals`` entry is given only to the detectors that use
proposals), then:

* loads the weights of ``checkpoint`` when given (and present), else trains with the fit config's
  ``trainer`` section (``train`` in the benchmark config, then in the detector's entry, override its
  keys, e.g. ``max_epochs``); ``model_overrides`` (benchmark-wide, then per entry) override the
  model's init_args (e.g. ``num_classes`` for another dataset);
* **parameters**: of the detector (backbone parts it does not use are not counted);
* **training time per epoch**: ``timing.train_batches`` timed training steps (forward, backward,
  optimizer step; after one warm-up step) times the number of batches in an epoch;
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

import argparse
import copy
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import yaml

GENERATIONS = ("rcnn", "fast_rcnn", "faster_rcnn", "yolov1")
PAPERS = {
    "rcnn": "R-CNN (2014)",
    "fast_rcnn": "Fast R-CNN (2015)",
    "faster_rcnn": "Faster R-CNN (2015)",
    "yolov1": "YOLOv1 (2016)",
}


def _import(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _factory(spec: Any) -> Callable | None:
    """A LightningCLI-style ``{class_path, init_args}`` optimizer/scheduler spec -> a callable taking
    the parameters (or the optimizer)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = {"class_path": spec}
    cls = _import(spec["class_path"])
    kwargs = dict(spec.get("init_args") or {})
    return lambda arg: cls(arg, **kwargs)


def _merge(base: dict, override: dict | None) -> dict:
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def build_task(model_cfg: dict, overrides: dict | None = None) -> Any:
    from visiontasks.tasks import DetectionTask

    args = _merge(dict(model_cfg.get("init_args") or {}), overrides)
    optimizer = _factory(args.pop("optimizer", None))
    scheduler = _factory(args.pop("lr_scheduler", None))
    return DetectionTask(**args, optimizer=optimizer, lr_scheduler=scheduler)


def build_datamodule(data_cfg: dict, with_proposals: bool) -> Any:
    init_args = copy.deepcopy(data_cfg.get("init_args") or {})
    if not with_proposals:
        init_args.pop("proposals", None)
    return _import(data_cfg["class_path"])(**init_args)


def _train_time_per_epoch(task: Any, dm: Any, batches: int) -> tuple[float, int]:
    """Seconds per training epoch, from ``batches`` timed steps (after one warm-up step) times the
    number of batches in an epoch; also returns that number."""
    import torch

    loader = dm.train_dataloader()
    per_epoch = len(loader)
    model = copy.deepcopy(task.detector)
    model.train()
    optimizer = task.optimizer_factory([p for p in model.parameters() if p.requires_grad])
    times: list[float] = []
    it = iter(loader)
    for step in range(batches + 1):
        try:
            images, targets = next(it)
        except StopIteration:
            it = iter(loader)
            images, targets = next(it)
        props = [t["proposals"] for t in targets] if model.needs_proposals else None
        start = time.perf_counter()
        losses = model(images, targets, props)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
        if step > 0:
            times.append(time.perf_counter() - start)
    del model, optimizer
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return sum(times) / len(times) * per_epoch, per_epoch


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
    import lightning.pytorch as pl

    kw = {k: trainer_cfg[k] for k in ("accelerator", "precision") if k in trainer_cfg}
    kw.update(validate_cfg or {})
    kw["devices"] = 1
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, **kw)
    return {k: float(v) for k, v in trainer.validate(task, datamodule=dm, verbose=False)[0].items()}


def _fit(task: Any, dm: Any, trainer_cfg: dict, out_dir: Path, name: str) -> Path:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    cfg = {k: v for k, v in trainer_cfg.items() if k not in ("logger", "callbacks", "default_root_dir")}
    ckpt = ModelCheckpoint(dirpath=out_dir / name / "checkpoints", save_last=True, save_top_k=0)
    trainer = pl.Trainer(logger=CSVLogger(out_dir, name=name), callbacks=[ckpt],
                         default_root_dir=out_dir, **cfg)
    trainer.fit(task, datamodule=dm)
    return out_dir / name / "checkpoints" / "last.ckpt"


def run_detector(name: str, spec: dict, bench: dict, out_dir: Path) -> dict[str, Any]:
    import torch

    fit_cfg = yaml.safe_load(Path(spec["config"]).read_text())
    task = build_task(fit_cfg["model"], _merge(bench.get("model_overrides") or {}, spec.get("model_overrides")))
    model_name = task.hparams.model
    needs = task.detector.needs_proposals
    dm = build_datamodule(bench["data"], with_proposals=needs)
    dm.prepare_data()
    dm.setup("fit")
    trainer_cfg = _merge(_merge(fit_cfg.get("trainer") or {}, bench.get("train")), spec.get("train"))
    checkpoint = spec.get("checkpoint")
    trained_here = False
    if checkpoint and Path(checkpoint).is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        task.load_state_dict(state.get("state_dict", state))
    else:
        if checkpoint:
            print(f"{name}: checkpoint {checkpoint} not found: training", file=sys.stderr)
        checkpoint = str(_fit(task, dm, trainer_cfg, out_dir, name))
        trained_here = True
    timing = bench.get("timing") or {}
    threads = timing.get("threads")
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        train_s, batches = _train_time_per_epoch(task, dm, int(timing.get("train_batches", 5)))
        net_ms, prop_ms = _inference_times(task, dm, int(timing.get("infer_images", 20)))
    finally:
        torch.set_num_threads(previous)
    metrics = _validate(task, dm, trainer_cfg, _merge(bench.get("validate") or {}, spec.get("validate")))
    return {
        "name": name, "model": model_name, "backbone": task.hparams.backbone,
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
            PAPERS.get(r["model"], r["model"]), r["backbone"], f"{r['params'] / 1e6:.2f}",
            f"{r['train_s_per_epoch']:.1f}", f"{r['proposal_ms']:.1f}" if r["proposal_ms"] else "0 (in network)",
            f"{r['network_ms']:.1f}", f"{r['total_ms']:.1f}", speed, f"{r['mAP50']:.3f}", f"{r['mAP']:.3f}",
        ]) + " |")
    return "\n".join(lines)


def chart(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [PAPERS.get(r["model"], r["model"]).split(" (")[0] for r in rows]
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


def detectors_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="visiontasks benchmark detectors", description=__doc__.split("\n")[0])
    parser.add_argument("--config", "-c", required=True, help="benchmark YAML (see configs/detection/generations_*.yaml)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these detector entries")
    parser.add_argument("--output", type=Path, default=None, help="output folder (default: the config's output)")
    args = parser.parse_args(argv)
    bench = yaml.safe_load(Path(args.config).read_text())
    out_dir = Path(args.output or bench.get("output") or "runs/generations")
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = bench.get("detectors") or {}
    names = [n for n in entries if args.only is None or n in args.only]
    if not names:
        print(f"no detectors to run (config has {list(entries)})", file=sys.stderr)
        return 2
    json_path = out_dir / "generations.json"
    done = {r["name"]: r for r in json.loads(json_path.read_text())} if json_path.is_file() else {}
    for name in names:
        spec = entries[name]
        if not Path(spec["config"]).is_file():
            print(f"{name}: config {spec['config']} not found: skipped", file=sys.stderr)
            continue
        print(f"== {name}", file=sys.stderr)
        start = time.perf_counter()
        done[name] = run_detector(name, spec, bench, out_dir)
        done[name]["benchmark_s"] = time.perf_counter() - start
        json_path.write_text(json.dumps(list(done.values()), indent=1))  # after each: resumable
    order = {m: i for i, m in enumerate(GENERATIONS)}
    rows = sorted(done.values(), key=lambda r: order.get(r["model"], len(order)))
    table = markdown_table(rows)
    title = bench.get("title", "detector generations")
    (out_dir / "generations.md").write_text(f"# {title}\n\n{table}\n")
    chart(rows, out_dir / "generations.png", title)
    print(table)
    print(f"wrote {out_dir / 'generations.md'}, {out_dir / 'generations.png'}, {json_path}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: visiontasks benchmark detectors --config FILE [--only NAME ...] [--output DIR]")
        return 0 if argv else 2
    if argv[0] != "detectors":
        print(f"visiontasks benchmark: unknown benchmark {argv[0]!r}; available: detectors", file=sys.stderr)
        return 2
    return detectors_main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
