"""Streaming (litdata chunks, ``data.init_args.streaming``) beside ``cache: disk`` and ``cache: none``.

1. Data epochs per second: one full pass over the training loader of each side (the datamodule's
   own loader: decoding or reading, the training augmentation, collation; no model, so the data
   path is what is timed), sides alternated in one process, ``--repeats`` rounds; the first pass of
   each side (chunk writing, cache filling, page cache warm-up) is timed apart and not counted.
   The ratios are printed per set: ``streaming / disk`` and ``streaming / none``.
2. ``--metric``: the same val metrics after the same steps: ``visiontasks fit`` (in this process,
   through the CLI entry point) of Faster R-CNN / MobileNet v2 + FPN on COCO128 at 320 px from the
   files (``cache: auto``) with ``--metric-seeds`` seeds (their spread is the noise) and from the
   chunks with the first seed.

Sets: ``hymenoptera`` (classification ImageFolder, 224 px, ``augment: standard``), ``coco128``
(detection, YOLO labels, 320 px letterbox) and ``large``: ``--large-images`` generated 640x480 JPEGs
(ImageFolder, 256 px: stored unshrunk, 0.92 MB decoded each), sized so that ``cache: auto`` refuses
RAM on this machine (its estimate over 25% of the available memory; printed).

    python benchmarks/streaming.py                                    # all three sets, 2 repeats
    python benchmarks/streaming.py --sets coco128 --repeats 1 --metric  # + the val metric check
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from end_to_end import SHARED, make_coco128_layout  # noqa: E402

SIDES = ("streaming", "disk", "none")


def make_large_folder(root: Path, n: int) -> Path:
    """``n`` smooth 640x480 JPEGs in ``root/train/c{0..3}`` and 64 in ``root/val`` (written once)."""
    from PIL import Image

    stamp = root / f".done{n}"
    if stamp.is_file():
        return root
    rng = np.random.default_rng(0)
    for split, count in (("train", n), ("val", 64)):
        for k in range(count):
            folder = root / split / f"c{k % 4}"
            folder.mkdir(parents=True, exist_ok=True)
            small = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
            Image.fromarray(small).resize((640, 480), Image.BILINEAR).save(folder / f"{k}.jpg", quality=90)
    stamp.write_text("ok")
    return root


def data_section(name: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    if name == "hymenoptera":
        return {"class_path": "visiontasks.data.ClassificationDataModule", "init_args": {
            "source": "imagefolder", "root": str(SHARED / "hymenoptera"), "image_size": 224, "batch_size": 32,
            "augment": "standard", "skip_bad_images": True}}
    if name == "coco128":
        return {"class_path": "visiontasks.data.DetectionDataModule", "init_args": {
            "format": "yolo", "root": str(make_coco128_layout(work / "coco128_det")), "train": "train",
            "val": "val", "image_size": 320, "resize": "letterbox", "batch_size": 8}}
    root = make_large_folder(work / f"large{args.large_images}", args.large_images)
    return {"class_path": "visiontasks.data.ClassificationDataModule", "init_args": {
        "source": "imagefolder", "root": str(root), "image_size": 256, "batch_size": 32, "augment": "standard"}}


def build(data: dict[str, Any], **overrides: Any) -> Any:
    from visiontasks.commands.check import build_datamodule

    section = {"class_path": data["class_path"], "init_args": {**data["init_args"], **overrides}}
    return build_datamodule(section, "benchmark")


def one_pass(dm: Any) -> tuple[float, int]:
    """Seconds of one pass over the training loader, and the items it gave."""
    loader = dm.train_dataloader()
    start, n = time.perf_counter(), 0
    for batch in loader:
        n += len(batch["id"]) if isinstance(batch, dict) else len(batch[0])
    return time.perf_counter() - start, n


def auto_line(dm: Any) -> str:
    """What ``cache: auto`` decides for the training split (its own info line's numbers)."""
    from visiontasks.data.cache import AUTO_RAM_FRACTION, _gib, available_memory

    dm.setup()
    src, idx = dm._splits["train"]
    _, fields, plan, _, _ = dm._cache_parts(src, idx, exact=False)
    picks = np.unique(np.linspace(0, len(idx) - 1, min(len(idx), 256)).round().astype(int))
    per = np.mean([np.prod(f.shape(plan(int(i))[1])) for i in picks for f in fields])
    need, avail = per * len(idx), available_memory() or 0
    verdict = "ram" if need <= AUTO_RAM_FRACTION * avail else "none"
    return (f"decoded training split {_gib(need)} ({len(idx)} images); available memory {_gib(avail)}, "
            f"auto's RAM limit {_gib(AUTO_RAM_FRACTION * avail)} -> cache auto = {verdict}")


def measure(name: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    data = data_section(name, work, args)
    chunks = work / f"{name}-chunks"
    cache_dir = work / "cache"
    start = time.perf_counter()
    build(data).write_streams(str(chunks), num_workers=args.workers)
    write_s = time.perf_counter() - start
    size = sum(p.stat().st_size for p in (chunks / "train").glob("*.bin"))
    print(f"{name}: optimize-data {write_s:.1f} s, train chunks {size / 2**30:.2f} GiB", flush=True)
    if name == "large":
        print(f"  {auto_line(build(data))}", flush=True)
    dms = {"streaming": build(data, streaming=str(chunks), num_workers=0),
           "disk": build(data, cache="disk", cache_dir=str(cache_dir), num_workers=0),
           "none": build(data, cache="none", num_workers=0)}
    first = {side: one_pass(dms[side])[0] for side in SIDES}  # writes the disk cache; warms the page cache
    print("  first pass (not counted): " + ", ".join(f"{s} {t:.1f} s" for s, t in first.items()), flush=True)
    times: dict[str, list[float]] = {s: [] for s in SIDES}
    items = 0
    for r in range(args.repeats):
        order = SIDES[r % 3:] + SIDES[: r % 3]  # alternate which side goes first
        for side in order:
            seconds, items = one_pass(dms[side])
            times[side].append(seconds)
            print(f"  round {r + 1} {side}: {seconds:.2f} s ({items} items)", flush=True)
    eps = {s: 1.0 / statistics.median(t) for s, t in times.items()}
    return {"set": name, "items": items, "chunks_gib": size / 2**30, "write_s": write_s, **eps}


# -- the val metric ---------------------------------------------------------------------------------------
def fit_metrics(config: Path, root: Path, seed: int, extra: list[str],
                val_key: str = "val/mAP") -> dict[str, float]:
    from visiontasks.cli import main as cli_main

    shutil.rmtree(root, ignore_errors=True)
    assert cli_main(["fit", "--config", str(config), "--seed_everything", str(seed), "--trainer.default_root_dir",
                     str(root), "--trainer.enable_progress_bar", "false", "--trainer.num_sanity_val_steps", "0",
                     *extra]) == 0
    (metrics,) = root.rglob("metrics.csv")
    rows = list(csv.DictReader(metrics.open()))
    val = [r for r in rows if r.get(val_key)][-1]  # detection logs no val/loss
    train = [r for r in rows if r.get("train/loss_epoch")][-1]  # the last epoch's mean training loss
    return {"train/loss_epoch": float(train["train/loss_epoch"]),
            **{k: float(val[k]) for k in ("val/mAP", "val/mAP50", "val/acc", "val/loss") if val.get(k)}}


def same_steps_check(work: Path, args: argparse.Namespace, set_name: str, model: dict[str, Any],
                     epochs: int, val_key: str, data_overrides: dict[str, Any] | None = None
                     ) -> list[tuple[str, dict[str, float]]]:
    """``visiontasks fit`` of ``model`` on ``set_name`` from the files with ``--metric-seeds`` seeds
    (their spread is the noise) and from its chunks with seed 0, the same steps each."""
    import yaml

    data = data_section(set_name, work, args)
    data["init_args"].update(data_overrides or {})
    tag = f"{set_name}-{data['init_args'].get('image_size')}"
    config = work / f"{tag}.yaml"
    config.write_text(yaml.safe_dump({"model": model, "data": data, "trainer": {
        "max_epochs": epochs, "accelerator": "auto", "devices": 1, "log_every_n_steps": 1}}))
    chunks = work / f"{tag}-metric-chunks"
    if not (chunks / "meta" / "index.json").is_file():
        build(data).write_streams(str(chunks), num_workers=args.workers)
    runs = [(f"files, seed {seed}", seed, []) for seed in range(args.metric_seeds)]
    runs.append(("streaming, seed 0", 0, ["--data.init_args.streaming", str(chunks)]))
    out = []
    for label, seed, extra in runs:
        out.append((label, fit_metrics(config, work / f"fit-{tag}-{label.replace(', ', '-')}", seed, extra, val_key)))
        print(out[-1], flush=True)
    return out


def print_table(title: str, results: list[tuple[str, dict[str, float]]], keys: tuple[str, ...]) -> None:
    print(f"\n| {title} | last epoch's train loss | {' | '.join(keys)} |\n|---|---|{'---|' * len(keys)}")
    for label, m in results:
        print(f"| {label} | {m['train/loss_epoch']:.4f} | "
              + " | ".join(f"{m.get(k, float('nan')):.4f}" for k in keys) + " |")


# the COCO128 detector (its mAP from scratch stays ~0 in minutes: the loss tells) and the hymenoptera
# classifier (its val accuracy moves within minutes), both from scratch
DETECTOR = {"class_path": "visiontasks.tasks.DetectionTask", "init_args": {
    "model": "faster_rcnn", "backbone": "mobilenet_v2", "model_kwargs": {"fpn": True},
    "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.001, "weight_decay": 0.0001}}}}
CLASSIFIER = {"class_path": "visiontasks.tasks.ClassificationTask", "init_args": {
    "backbone": "resnet18", "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.001}}}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", nargs="+", default=["hymenoptera", "coco128", "large"],
                   choices=["hymenoptera", "coco128", "large"])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--large-images", type=int, default=7000)
    p.add_argument("--workers", type=int, default=2, help="optimize-data's processes")
    p.add_argument("--metric", action="store_true", help="also the COCO128 val metric check (minutes on a CPU)")
    p.add_argument("--class-metric", action="store_true", help="also the hymenoptera val accuracy check")
    p.add_argument("--metric-epochs", type=int, default=2)  # from scratch: mAP is still ~0 then; the loss tells
    p.add_argument("--metric-seeds", type=int, default=2)
    p.add_argument("--work-dir", default=str(Path.home() / ".cache" / "visiontasks" / "bench-streaming"))
    p.add_argument("--keep", action="store_true", help="keep the chunks and the disk caches")
    args = p.parse_args()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.sets if args.repeats > 0 else []:
        rows.append(measure(name, work, args))
        if not args.keep:
            shutil.rmtree(work / f"{name}-chunks", ignore_errors=True)
            shutil.rmtree(work / "cache", ignore_errors=True)
    if rows:  # --repeats 0: only the metric checks
        print("\n| set | items/epoch | train chunks | streaming ep/s | disk ep/s | none ep/s | streaming/disk | streaming/none |")
        print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['set']} | {r['items']} | {r['chunks_gib']:.2f} GiB | {r['streaming']:.3f} | {r['disk']:.3f} | "
              f"{r['none']:.3f} | {r['streaming'] / r['disk']:.2f} | {r['streaming'] / r['none']:.2f} |")
    if args.class_metric:  # ResNet-18 at 128 px, --metric-epochs x 2 epochs
        results = same_steps_check(work, args, "hymenoptera", CLASSIFIER, 2 * args.metric_epochs, "val/acc",
                                   {"image_size": 128})
        print_table("hymenoptera ResNet-18, same steps", results, ("val/loss", "val/acc"))
    if args.metric:
        results = same_steps_check(work, args, "coco128", DETECTOR, args.metric_epochs, "val/mAP")
        print_table("COCO128 Faster R-CNN, same steps", results, ("val/mAP", "val/mAP50"))


if __name__ == "__main__":
    main()
