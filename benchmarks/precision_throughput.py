"""Faster R-CNN R50-FPN training throughput (images/s) under 32-true, 16-mixed and bf16-mixed:
``visiontasks fit`` of the shipped recipe (configs/detection/faster_rcnn_resnet50_fpn_coco.yaml) vs
a plain loop written the way torchvision's detection references write it, on the same data.

Both sides train from scratch (no download): ours with ``backbone_weights: null``, all stages
trainable and BatchNorm in training mode; torchvision's ``fasterrcnn_resnet50_fpn(weights=None,
weights_backbone=None)``, which is the same network built the same way. Same images (COCO128, YOLO
labels), the same resize rule (shorter side ``--size`` unless the longer exceeds ``--size``, so the
longer side is ``--size``), random horizontal flips, batch ``--batch``, SGD (lr ``--lr``, momentum 0.9,
weight decay 1e-4), the same loader worker count (visiontasks' ``num_workers: auto``). The plain
loop is the references' ``train_one_epoch``: PIL decode + ``to_tensor`` in workers, torchvision's
transform (normalise + resize) on the GPU, ``torch.autocast`` (+ ``GradScaler`` for float16);
workers persistent across epochs (the references restart them; that would only slow the plain side).

Timed: ``--steps`` optimizer steps, the first ``--warmup`` left out (cuDNN, allocator), a CUDA
synchronize after each step; images/s = images of the timed steps / their time. Also: mean GPU
utilisation (``nvidia-smi``) and peak memory of each run, and whether the last loss was finite.

    python benchmarks/precision_throughput.py --json runs/gpu_check/precision.json      # on a GPU
    python benchmarks/precision_throughput.py --dry-run                                # CPU: tiny, 2 steps

``--dry-run``: the same steps on generated data (8 images of 128 px), batch 2, 2 steps, 16-mixed
left out on a CPU (float16 autocast is a GPU path), no ``nvidia-smi`` needed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "detection" / "faster_rcnn_resnet50_fpn_coco.yaml"
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed")

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # pragma: no cover
    Callback = object  # type: ignore[misc,assignment]


class StepTimer(Callback):  # type: ignore[misc]
    """Loaded into the fit subprocess: after each training step (synchronized), its time and images;
    at the end of fit, ``{"steps": [[t, images], ...], "peak_mib": ..., "last_loss": ...}`` to
    ``$VT_STEP_TIMES``."""

    def __init__(self) -> None:
        self.path = os.environ["VT_STEP_TIMES"]
        self.steps: list[list[float]] = []

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.steps.append([time.perf_counter(), float(len(batch[0]))])

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        import torch

        loss = trainer.callback_metrics.get("train/loss_step", trainer.callback_metrics.get("train/loss"))
        peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
        Path(self.path).write_text(json.dumps({"steps": self.steps, "peak_mib": peak,
                                               "last_loss": None if loss is None else float(loss)}))


def images_per_s(steps: list[list[float]], warmup: int) -> float:
    """Images of the steps after ``warmup`` over their time (each step ends at its timestamp)."""
    timed = steps[warmup:]
    if len(timed) < 1 or warmup < 1:
        raise ValueError("need at least one warm-up step and one timed step")
    return sum(n for _, n in timed) / (timed[-1][0] - steps[warmup - 1][0])


# -- data ---------------------------------------------------------------------------------------------
def coco128_layout(work: Path, coco128: Path) -> Path:
    """COCO128's YOLO layout under ``work`` (``data.yaml`` + links), as benchmarks/end_to_end.py makes it."""
    if not (coco128 / "object_detection" / "config.yaml").is_file():
        sys.exit(f"precision_throughput: no COCO128 at {coco128} (object_detection/config.yaml, images/, "
                 "object_detection/labels/); give --coco128 DIR")
    root = work / "coco128_det"
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text((coco128 / "object_detection" / "config.yaml").read_text())
    for name, target in (("images", coco128 / "images"), ("labels", coco128 / "object_detection" / "labels")):
        if not (root / name).exists():
            (root / name).symlink_to(target.resolve())
    return root


def tiny_layout(work: Path, size: int) -> Path:
    """8 generated images of ``size`` px in the YOLO layout (the dry run's data)."""
    sys.path.insert(0, str(REPO))
    from visiontasks.data.detection import write_synthetic_detection

    return write_synthetic_detection(work / f"tiny_yolo_{size}", "yolo", splits={"train": 8, "val": 2},
                                     image_size=size, num_classes=3, max_objects=3, background_fraction=0.0)


def yolo_samples(root: Path, split: str) -> tuple[list[tuple[Path, list[list[float]], list[int]]], int]:
    """``([(image, boxes xyxy px, labels 0-based), ...], number of classes)`` of a YOLO split."""
    import yaml
    from PIL import Image

    spec = yaml.safe_load((root / "data.yaml").read_text())
    names = spec["names"]
    folder = root / spec[split]
    out = []
    for image in sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
        rel = image.relative_to(root / "images")
        label = (root / "labels" / rel).with_suffix(".txt")
        with Image.open(image) as im:
            w, h = im.size
        boxes, labels = [], []
        if label.is_file():
            for line in label.read_text().split("\n"):
                parts = line.split()
                if len(parts) == 5:
                    c, cx, cy, bw, bh = int(parts[0]), *map(float, parts[1:])
                    x0, y0 = max((cx - bw / 2) * w, 0.0), max((cy - bh / 2) * h, 0.0)
                    x1, y1 = min((cx + bw / 2) * w, w), min((cy + bh / 2) * h, h)
                    if x1 > x0 + 1 and y1 > y0 + 1:
                        boxes.append([x0, y0, x1, y1])
                        labels.append(c)
        out.append((image, boxes, labels))
    return out, len(names)


# -- visiontasks fit ---------------------------------------------------------------------------------
def run_fit(root: Path, precision: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The shipped R50-FPN recipe on ``root`` through ``visiontasks fit`` (a subprocess)."""
    import yaml

    cfg = yaml.safe_load(RECIPE.read_text())
    model = cfg["model"]["init_args"]
    model.update(backbone_weights=None, frozen_stages=0, norm_eval=False)  # from scratch, as torchvision's
    model["optimizer"]["init_args"]["lr"] = args.lr
    data = cfg["data"]["init_args"]
    for key in ("train", "val"):
        data[key] = key
    data.update(format="yolo", root=str(root), image_size=[args.size, args.size], batch_size=args.batch)
    cfg["trainer"].update(max_steps=args.steps, limit_val_batches=0, num_sanity_val_steps=0, devices=1,
                          precision=precision, enable_progress_bar=False, enable_model_summary=False,
                          default_root_dir=str(work / "runs"))
    with tempfile.TemporaryDirectory() as tmp:
        config, times = Path(tmp) / "frcnn_r50_fpn.yaml", Path(tmp) / "steps.json"
        config.write_text(yaml.safe_dump(cfg))
        env = dict(os.environ, VT_STEP_TIMES=str(times),
                   PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "benchmarks"), os.environ.get("PYTHONPATH", "")]))
        from gpu_monitor import GpuSampler

        with GpuSampler() as gpu:
            proc = subprocess.run([sys.executable, "-m", "visiontasks.cli", "fit", "--config", str(config),
                                   "--trainer.callbacks+=precision_throughput.StepTimer"],
                                  env=env, capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0:
            raise RuntimeError(f"visiontasks fit ({precision}) failed:\n{proc.stderr[-3000:]}")
        result = json.loads(times.read_text())
    return {"img_per_s": images_per_s(result["steps"], args.warmup), "gpu_util": gpu.util,
            "peak_mib": result["peak_mib"], "last_loss": result["last_loss"]}


# -- the plain loop ------------------------------------------------------------------------------------
class YoloDataset:
    """PIL decode, ``to_tensor``, random horizontal flip; targets with 1-based labels (0 = background)."""

    def __init__(self, samples: list[tuple[Path, list[list[float]], list[int]]]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, dict[str, Any]]:
        import torch
        from PIL import Image
        from torchvision.transforms.functional import to_tensor

        path, boxes, labels = self.samples[i]
        with Image.open(path) as im:
            image = to_tensor(im.convert("RGB"))
        b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
            w = image.shape[-1]
            b = torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], 1)
        return image, {"boxes": b, "labels": torch.tensor(labels, dtype=torch.int64) + 1}


def _collate(batch: list[Any]) -> tuple[Any, ...]:
    return tuple(zip(*batch))


def run_plain(root: Path, precision: str, args: argparse.Namespace) -> dict[str, Any]:
    import math

    import torch
    from torch.utils.data import DataLoader
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    from gpu_monitor import GpuSampler

    sys.path.insert(0, str(REPO))
    from visiontasks.data.base import resolve_num_workers

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    samples, classes = yolo_samples(root, "train")
    workers = resolve_num_workers("auto")
    loader = DataLoader(YoloDataset(samples), batch_size=args.batch, shuffle=True, num_workers=workers,
                        collate_fn=_collate, persistent_workers=workers > 0)
    torch.manual_seed(0)
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=classes + 1,
                                    min_size=args.size, max_size=args.size).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=1e-4)
    dtype = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(precision)
    scaler = torch.amp.GradScaler(device.type) if precision == "16-mixed" else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model.train()
    steps: list[list[float]] = []
    loss = torch.tensor(float("nan"))
    with GpuSampler() as gpu:
        while len(steps) < args.steps:
            for images, targets in loader:
                images = [im.to(device, non_blocking=True) for im in images]
                targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    loss = sum(model(images, targets).values())
                opt.zero_grad()
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    opt.step()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                steps.append([time.perf_counter(), float(len(images))])
                if len(steps) == args.steps:
                    break
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    last = float(loss.detach())
    del model, opt, loader
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"img_per_s": images_per_s(steps, args.warmup), "gpu_util": gpu.util, "peak_mib": peak,
            "last_loss": last if math.isfinite(last) else None}


# -- main ------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="tiny generated data, 2 steps (runs on a CPU)")
    p.add_argument("--size", type=int, default=None, help="longer image side in px (default 640; dry run 128)")
    p.add_argument("--batch", type=int, default=None, help="images per step (default 8; dry run 2)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default 60; dry run 2)")
    p.add_argument("--warmup", type=int, default=None, help="steps left out of the timing (default 10; dry run 1)")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (the recipe's 0.02 x batch 8 / 16)")
    p.add_argument("--precisions", default=",".join(PRECISIONS))
    p.add_argument("--coco128", type=Path, default=REPO.parent / "shared" / "data" / "coco128")
    p.add_argument("--work-dir", type=Path, default=Path.home() / ".cache" / "visiontasks" / "bench")
    p.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = p.parse_args(argv)
    dry = dict(size=128, batch=2, steps=2, warmup=1) if args.dry_run else dict(size=640, batch=8, steps=60, warmup=10)
    for key, value in dry.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    sys.path.insert(0, str(REPO / "benchmarks"))
    import torch

    cuda = torch.cuda.is_available()
    root = tiny_layout(args.work_dir, args.size) if args.dry_run else coco128_layout(args.work_dir, args.coco128)
    rows = []
    print(f"Faster R-CNN R50-FPN, {'generated data' if args.dry_run else 'COCO128'} at {args.size} px, batch "
          f"{args.batch}, {args.steps - args.warmup} timed steps after {args.warmup}, on "
          f"{torch.cuda.get_device_name() if cuda else 'CPU'}", flush=True)
    for i, precision in enumerate(p.strip() for p in args.precisions.split(",") if p.strip()):
        if precision == "16-mixed" and not cuda:
            rows.append({"precision": precision, "skipped": "float16 autocast is a GPU path"})
            continue
        if precision == "bf16-mixed" and cuda and not torch.cuda.is_bf16_supported():
            rows.append({"precision": precision, "skipped": "this GPU has no bfloat16"})
            continue
        sides = [("visiontasks", lambda: run_fit(root, precision, args, args.work_dir)),
                 ("plain", lambda: run_plain(root, precision, args))]
        result = {}
        for name, run in sides if i % 2 == 0 else sides[::-1]:  # alternate who goes first
            result[name] = run()
        row = {"precision": precision, **{f"{k}_{side}": v for side, r in result.items() for k, v in r.items()}}
        row["ratio"] = row["img_per_s_visiontasks"] / row["img_per_s_plain"]
        rows.append(row)
        print(f"  {precision:10s} visiontasks {row['img_per_s_visiontasks']:8.2f} img/s   plain "
              f"{row['img_per_s_plain']:8.2f} img/s   ratio {row['ratio']:.2f}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"size": args.size, "batch": args.batch, "steps": args.steps,
                                         "warmup": args.warmup, "dry_run": args.dry_run,
                                         "device": torch.cuda.get_device_name() if cuda else "cpu",
                                         "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
