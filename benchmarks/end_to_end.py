"""End to end: the whole ``visiontasks fit`` (a subprocess, from files on disk, with the default
data settings) vs plain PyTorch loops with the data decoded once; same model, batch, epochs,
optimizer and loss, all validating every epoch, alternated ``--repeats`` times. Prints, per case,
the steady-state epochs per second of each side and the ratios (goal >= 0.9), with start-up
reported apart: fit's time from launching the command to its first training step (imports,
config, data set-up, cache fill) and the plain loop's decoding + model set-up. Also per case: the
training images per second of each side (epochs with their validation, as the ratio) and the mean
GPU utilisation while each side ran (``nvidia-smi``; ``n/a`` on a CPU); ``--json`` writes them.

Plain sides:
- ``plain``: decoded arrays through visiontasks' albumentations pipelines, per sample, in loader
  workers (the same augmentation as fit);
- ``tensor`` (classification): the loop a PyTorch user writes for MNIST: the split as one uint8
  tensor in memory, batches by indexing, random shifts of up to 2 px by indexing a padded batch,
  no loader at all.

    python benchmarks/end_to_end.py                                # all four cases, 10 epochs, 3 repeats
    python benchmarks/end_to_end.py --cases lenet5 --epochs 2 --repeats 1 --lenet-images 800   # a quick check

Cases (data is generated, or linked, under ``--work-dir``, default ``~/.cache/visiontasks/bench``):
- ``lenet5``: LeNet-5 on an MNIST-like ImageFolder of ``--lenet-images`` 28x28 PNGs (scikit-learn's
  digits, upsampled and randomly shifted), batch 32, ``augment: light``;
- ``resnet18``: ResNet-18 classification on ``data/hymenoptera`` at 224 px, batch 32, ``augment: standard``;
- ``fcn8s``: FCN-8s / ResNet-18 (fc6/fc7 128 channels, 3x3, as the shapes config) on ``--seg-images`` generated 480x360 image/mask PNG pairs, crop 256, batch 8;
- ``faster_rcnn``: Faster R-CNN, MobileNet v2 + FPN, on COCO128 (YOLO labels) at 320 px letterbox, batch 8.
Both sides run on the default device (``accelerator: auto``); fit uses the defaults
(``num_workers: auto``, ``cache: auto``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/data")


# -- the timing callback loaded into the fit subprocess -------------------------------------------------
try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # pragma: no cover
    Callback = object  # type: ignore[misc,assignment]


class EpochTimer(Callback):  # type: ignore[misc]
    """Appends ``{"event": first_step | epoch_end, "t": time.time()}`` lines to ``$VT_BENCH_TIMES``."""

    def __init__(self) -> None:
        self.path = os.environ["VT_BENCH_TIMES"]
        self.started = False
        self.images = 0  # training images of the current epoch

    def _write(self, event: str, **extra: float) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"event": event, "t": time.time(), **extra}) + "\n")

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if not self.started:
            self.started = True
            self._write("first_step")

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.images += int(pl_module.batch_size(batch)) if hasattr(pl_module, "batch_size") else 0

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:  # after the epoch's validation
        acc = trainer.callback_metrics.get("val/acc")
        self._write("epoch_end", images=self.images, **({"val_acc": float(acc)} if acc is not None else {}))
        self.images = 0


# -- data ---------------------------------------------------------------------------------------------------
def make_digit_folder(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` 28x28 grey PNGs in ``root/{train,val}/<digit>/`` (90/10): scikit-learn's 8x8 digits
    upsampled to 20x20 and placed at a random offset in the 28x28 frame, plus faint noise."""
    from PIL import Image
    from sklearn.datasets import load_digits

    stamp = root / f".made-{n}-{seed}"
    if stamp.is_file():
        return root
    digits = load_digits()
    rng = np.random.default_rng(seed)
    for k in range(n):
        j = int(rng.integers(len(digits.images)))
        small = Image.fromarray(np.uint8(digits.images[j] * 255 / 16)).resize((20, 20), Image.BILINEAR)
        canvas = np.zeros((28, 28), np.float32)
        y, x = rng.integers(0, 9, size=2)
        canvas[y : y + 20, x : x + 20] = np.asarray(small, np.float32)
        canvas += rng.normal(0, 8, canvas.shape)
        split = "val" if k % 10 == 0 else "train"
        folder = root / split / str(int(digits.target[j]))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.uint8(canvas.clip(0, 255))).save(folder / f"{k:05d}.png")
    stamp.touch()
    return root


def make_street_folder(root: Path, n: int, seed: int = 0, classes: int = 6) -> Path:
    """``n`` 480x360 RGB image / index-mask PNG pairs (CamVid's size) in ``root/{images,masks}/{train,val}``
    (80/20): a sky/road split plus random rectangles and ellipses of ``classes - 2`` kinds."""
    import cv2

    stamp = root / f".made-{n}-{seed}"
    if stamp.is_file():
        return root
    rng = np.random.default_rng(seed)
    colours = rng.integers(30, 225, (classes, 3))
    for k in range(n):
        split = "val" if k % 5 == 0 else "train"
        mask = np.zeros((360, 480), np.uint8)
        horizon = int(rng.integers(120, 220))
        mask[horizon:] = 1
        for _ in range(int(rng.integers(3, 9))):
            c = int(rng.integers(2, classes))
            x, y = int(rng.integers(0, 440)), int(rng.integers(40, 330))
            w, h = int(rng.integers(20, 120)), int(rng.integers(20, 100))
            if c % 2:
                cv2.rectangle(mask, (x, y), (x + w, y + h), c, -1)
            else:
                cv2.ellipse(mask, (x, y), (w // 2, h // 2), 0, 0, 360, c, -1)
        image = colours[mask].astype(np.float32) + rng.normal(0, 12, (360, 480, 3))
        for sub, arr in (("images", image.clip(0, 255).astype(np.uint8)), ("masks", mask)):
            folder = root / sub / split
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{k:04d}.png"), arr)
    stamp.touch()
    return root


def make_coco128_layout(root: Path) -> Path:
    """A YOLO layout of the shared COCO128 (its ``object_detection/images`` may be a placeholder):
    ``data.yaml`` + links to the shared ``images`` and ``labels``."""
    src = SHARED / "coco128"
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text((src / "object_detection" / "config.yaml").read_text())
    for name, target in (("images", src / "images"), ("labels", src / "object_detection" / "labels")):
        link = root / name
        if not link.exists():
            link.symlink_to(target)
    return root


# -- the cases ----------------------------------------------------------------------------------------------
def cases(work: Path, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    adamw = {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.001, "weight_decay": 0.0001}}
    return {
        "lenet5": {
            "prepare": lambda: make_digit_folder(work / f"digits{args.lenet_images}", args.lenet_images),
            "model": {"class_path": "visiontasks.tasks.ClassificationTask",
                      "init_args": {"backbone": "lenet5", "in_chans": 1, "head": "paper", "optimizer": adamw}},
            "data": lambda root: {"class_path": "visiontasks.data.ClassificationDataModule", "init_args": {
                "source": "imagefolder", "root": str(root), "image_size": 28, "in_chans": 1, "batch_size": 32,
                "augment": "light"}},
            "plain": plain_classification,
            "tensor": tensor_classification,
        },
        "resnet18": {
            "prepare": lambda: SHARED / "hymenoptera",
            "model": {"class_path": "visiontasks.tasks.ClassificationTask",
                      "init_args": {"backbone": "resnet18", "in_chans": 3, "optimizer": adamw}},
            "data": lambda root: {"class_path": "visiontasks.data.ClassificationDataModule", "init_args": {
                "source": "imagefolder", "root": str(root), "image_size": 224, "in_chans": 3, "batch_size": 32,
                "augment": "standard"}},
            "plain": plain_classification,
        },
        "fcn8s": {
            "prepare": lambda: make_street_folder(work / f"street{args.seg_images}", args.seg_images),
            "model": {"class_path": "visiontasks.tasks.SegmentationTask",
                      # the CPU-sized classifier of configs/segmentation/fcn8s_resnet18_shapes.yaml
                      "init_args": {"model": "fcn8s", "backbone": "resnet18", "fc_channels": 128,
                                    "fc_kernel_size": 3, "dropout": 0.1, "optimizer": adamw}},
            "data": lambda root: {"class_path": "visiontasks.data.SegmentationDataModule", "init_args": {
                "root": str(root), "format": "folder", "num_classes": 6, "test_split": None, "crop_size": 256,
                "batch_size": 8, "eval_batch_size": 4}},
            "plain": plain_segmentation,
        },
        "faster_rcnn": {
            "prepare": lambda: make_coco128_layout(work / "coco128_det"),
            "model": {"class_path": "visiontasks.tasks.DetectionTask",
                      "init_args": {"model": "faster_rcnn", "backbone": "mobilenet_v2",
                                    "model_kwargs": {"fpn": True}, "optimizer": adamw}},
            "data": lambda root: {"class_path": "visiontasks.data.DetectionDataModule", "init_args": {
                "format": "yolo", "root": str(root), "train": "train", "val": "val", "image_size": 320,
                "resize": "letterbox", "batch_size": 8}},
            "plain": plain_detection,
        },
    }


# -- visiontasks fit -----------------------------------------------------------------------------------------
def run_fit(name: str, case: dict[str, Any], root: Path, epochs: int, work: Path) -> dict[str, float]:
    import yaml

    config = {
        "seed_everything": 0,
        "model": case["model"],
        "data": case["data"](root),
        "trainer": {"max_epochs": epochs, "accelerator": "auto", "devices": 1,
                    "default_root_dir": str(work / "runs" / name), "log_every_n_steps": 10},
    }
    with tempfile.TemporaryDirectory() as tmp:
        cfg, times = Path(tmp) / "config.yaml", Path(tmp) / "times.jsonl"
        cfg.write_text(yaml.safe_dump(config))
        env = dict(os.environ, VT_BENCH_TIMES=str(times),
                   PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "benchmarks"), os.environ.get("PYTHONPATH", "")]))
        t0 = time.time()
        proc = subprocess.run(
            [sys.executable, "-m", "visiontasks.cli", "fit", "--config", str(cfg),
             "--trainer.callbacks+=end_to_end.EpochTimer", "--trainer.enable_progress_bar=false"],
            env=env, capture_output=True, text=True, cwd=tmp,
        )
        total = time.time() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"fit failed ({name}):\n{proc.stderr[-3000:]}")
        events = [json.loads(line) for line in times.read_text().splitlines()]
    first = next(e["t"] for e in events if e["event"] == "first_step")
    ends = [e["t"] for e in events if e["event"] == "epoch_end"]
    out = {"startup_s": first - t0, "train_s": ends[-1] - first, "epochs_per_s": len(ends) / (ends[-1] - first),
           "total_s": total, "images_per_epoch": events[-1].get("images", 0)}
    last = [e for e in events if e["event"] == "epoch_end"][-1]
    return {**out, **({"val_acc": last["val_acc"]} if "val_acc" in last else {})}


# -- plain loops ---------------------------------------------------------------------------------------------
def _loader(dataset: Any, batch_size: int, shuffle: bool, collate: Callable | None = None) -> Any:
    """The plain loop's loader: the same worker count as visiontasks' ``auto`` on this device,
    persistent workers."""
    from torch.utils.data import DataLoader

    from visiontasks.data.base import resolve_num_workers

    workers = resolve_num_workers("auto", on_cpu=_device().type == "cpu")
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers, collate_fn=collate,
                      persistent_workers=workers > 0, drop_last=shuffle and len(dataset) > batch_size)


def _epoch_images(loader: Any) -> int:
    """Training images one epoch of ``loader`` yields."""
    return len(loader) * loader.batch_size if loader.drop_last else len(loader.dataset)


class ArrayDataset:
    """Decoded arrays through an albumentations transform, as a plain loop would hold them."""

    def __init__(self, items: list[tuple], fn: Callable) -> None:
        self.items, self.fn = items, fn

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.fn(*self.items[i])


def _device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _files(folder: Path) -> list[Path]:
    from visiontasks.data.io import list_image_files

    return list_image_files(folder, recursive=True)


def _decode_image_folder(folder: Path, chans: int, classes: list[str], size: int | None = None) -> list[tuple]:
    """``(uint8 [H, W, chans], label)`` of every image under ``folder/<class>/``, resized to
    ``size`` x ``size`` (bilinear) when given."""
    from PIL import Image

    out = []
    for p in _files(folder):
        with Image.open(p) as im:
            im = im.convert("L" if chans == 1 else "RGB")
            arr = np.asarray(im.resize((size, size), Image.BILINEAR) if size else im)
        out.append((arr[..., None] if chans == 1 else arr, classes.index(p.parent.name)))
    return out


def _train_step(opt: Any, loss: Any) -> None:
    opt.zero_grad()
    loss.backward()
    opt.step()


def plain_classification(case: dict[str, Any], root: Path, epochs: int) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    from visiontasks.data.classification.transforms import classification_transforms, default_mean_std
    from visiontasks.tasks import ClassificationTask

    t0 = time.time()
    d = case["data"](root)["init_args"]
    chans, size = d["in_chans"], (d["image_size"], d["image_size"])
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())

    def decode(split: str) -> list[tuple]:
        return _decode_image_folder(root / split, chans, classes)

    mean, std = default_mean_std(chans)
    train_t = classification_transforms(size, True, d["augment"], mean, std, chans)
    eval_t = classification_transforms(size, False, d["augment"], mean, std, chans)
    train = ArrayDataset(decode("train"), lambda a, y: (train_t(image=a)["image"], y))
    val = ArrayDataset(decode("val"), lambda a, y: (eval_t(image=a)["image"], y))
    torch.manual_seed(0)
    task = ClassificationTask(num_classes=len(classes), **{k: v for k, v in case["model"]["init_args"].items() if k != "optimizer"})
    model = task.to(_device())
    opt = torch.optim.AdamW(model.parameters(), lr=0.001, weight_decay=0.0001)
    train_dl, val_dl = _loader(train, d["batch_size"], True), _loader(val, d["batch_size"], False)
    dev = _device()
    start = time.time()
    for _ in range(epochs):
        model.train()
        for x, y in train_dl:
            loss = F.cross_entropy(model(x.to(dev)), y.to(dev))
            _train_step(opt, loss)
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in val_dl:
                correct += int((model(x.to(dev)).argmax(1).cpu() == y).sum())
    train_s = time.time() - start
    return {"startup_s": start - t0, "train_s": train_s, "epochs_per_s": epochs / train_s, "val_acc": correct / len(val),
            "images_per_epoch": _epoch_images(train_dl)}


def tensor_classification(case: dict[str, Any], root: Path, epochs: int) -> dict[str, float]:
    """The MNIST loop: ``uint8 [N, C, H, W]`` tensors, a random permutation per epoch, batches by
    indexing, each sample shifted by up to 2 px (pad, then index a window at a random offset)."""
    import torch
    import torch.nn.functional as F

    from visiontasks.data.classification.transforms import default_mean_std
    from visiontasks.tasks import ClassificationTask

    t0 = time.time()
    d = case["data"](root)["init_args"]
    chans, size = d["in_chans"], d["image_size"]
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())

    def decode(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        items = _decode_image_folder(root / split, chans, classes, size)
        images = torch.from_numpy(np.stack([a for a, _ in items])).permute(0, 3, 1, 2).contiguous()
        return images, torch.tensor([y for _, y in items])

    dev = _device()
    (xs, ys), (xv, yv) = decode("train"), decode("val")
    xs, ys, xv, yv = xs.to(dev), ys.to(dev), xv.to(dev), yv.to(dev)
    mean, std = (torch.tensor(v, device=dev).view(1, -1, 1, 1) * 255 for v in default_mean_std(chans))
    torch.manual_seed(0)
    task = ClassificationTask(num_classes=len(classes), **{k: v for k, v in case["model"]["init_args"].items() if k != "optimizer"})
    model = task.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=0.001, weight_decay=0.0001)
    bs, pad = d["batch_size"], 2
    ar = torch.arange(size, device=dev)
    start = time.time()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(xs), device=dev)
        for k in range(len(xs) // bs):  # drop_last, as fit's training loader
            idx = order[k * bs : (k + 1) * bs]
            x = F.pad(xs[idx].float(), (pad, pad, pad, pad))
            dy, dx = (torch.randint(0, 2 * pad + 1, (len(idx), 1), device=dev) for _ in range(2))
            rows, cols = (ar[None] + dy)[:, None, :, None], (ar[None] + dx)[:, None, None, :]
            x = x[torch.arange(len(idx), device=dev)[:, None, None, None], torch.arange(chans, device=dev)[None, :, None, None], rows, cols]
            loss = F.cross_entropy(model((x - mean) / std), ys[idx])
            _train_step(opt, loss)
        model.eval()
        correct = 0
        with torch.no_grad():
            for k in range(0, len(xv), bs):
                correct += int((model((xv[k : k + bs].float() - mean) / std).argmax(1) == yv[k : k + bs]).sum())
    train_s = time.time() - start
    return {"startup_s": start - t0, "train_s": train_s, "epochs_per_s": epochs / train_s, "val_acc": correct / len(xv),
            "images_per_epoch": len(xs) // bs * bs}


def plain_segmentation(case: dict[str, Any], root: Path, epochs: int) -> dict[str, float]:
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from visiontasks.data.segmentation.dataset import pad_collate
    from visiontasks.data.segmentation.transforms import segmentation_eval_transforms, segmentation_train_transforms
    from visiontasks.tasks import SegmentationTask

    t0 = time.time()
    d = case["data"](root)["init_args"]

    def decode(split: str) -> list[tuple]:
        out = []
        for p in _files(root / "images" / split):
            with Image.open(p) as im, Image.open(root / "masks" / split / p.name) as m:
                out.append((np.asarray(im.convert("RGB")), np.asarray(m).astype(np.int32)))
        return out

    train_t = segmentation_train_transforms(d["crop_size"])
    eval_t = segmentation_eval_transforms()

    def item(t: Any) -> Callable:
        def fn(image: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
            out = t(image=image, mask=mask)
            img = torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1)))
            return {"image": img, "mask": torch.from_numpy(np.ascontiguousarray(out["mask"])).long(),
                    "id": "", "size": tuple(img.shape[-2:]), "orig_size": tuple(img.shape[-2:])}
        return fn

    train, val = ArrayDataset(decode("train"), item(train_t)), ArrayDataset(decode("val"), item(eval_t))
    torch.manual_seed(0)
    k = d["num_classes"]
    task = SegmentationTask(num_classes=k, **{a: v for a, v in case["model"]["init_args"].items() if a != "optimizer"})
    dev = _device()
    model = task.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=0.001, weight_decay=0.0001)
    collate = pad_collate(255)
    train_dl = _loader(train, d["batch_size"], True, collate)
    val_dl = _loader(val, d["eval_batch_size"], False, collate)
    start = time.time()
    for _ in range(epochs):
        model.train()
        for b in train_dl:
            loss = F.cross_entropy(model(b["image"].to(dev)), b["mask"].to(dev), ignore_index=255)
            _train_step(opt, loss)
        model.eval()
        conf = torch.zeros(k * k, dtype=torch.long)
        with torch.no_grad():
            for b in val_dl:
                pred, mask = model(b["image"].to(dev)).argmax(1).cpu(), b["mask"]
                keep = mask != 255
                conf += torch.bincount(mask[keep] * k + pred[keep], minlength=k * k)
    train_s = time.time() - start
    conf = conf.view(k, k).double()
    miou = float((conf.diag() / (conf.sum(0) + conf.sum(1) - conf.diag()).clamp(min=1)).mean())
    return {"startup_s": start - t0, "train_s": train_s, "epochs_per_s": epochs / train_s, "val_mIoU": miou,
            "images_per_epoch": _epoch_images(train_dl)}


def plain_detection(case: dict[str, Any], root: Path, epochs: int) -> dict[str, float]:
    import torch
    from PIL import Image

    from visiontasks.data.detection.transforms import apply_detection_transform, build_detection_transform
    from visiontasks.tasks import DetectionTask

    t0 = time.time()
    d = case["data"](root)["init_args"]
    names = __import__("yaml").safe_load((root / "data.yaml").read_text())["names"]

    def decode(split: str) -> list[tuple]:
        out = []
        for p in _files(root / "images" / f"{split}2017"):
            with Image.open(p) as im:
                arr = np.asarray(im.convert("RGB"))
            h, w = arr.shape[:2]
            lab = root / "labels" / f"{split}2017" / f"{p.stem}.txt"
            rows = np.loadtxt(lab, ndmin=2).reshape(-1, 5) if lab.is_file() else np.zeros((0, 5))
            cx, cy, bw, bh = rows[:, 1] * w, rows[:, 2] * h, rows[:, 3] * w, rows[:, 4] * h
            boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1).astype(np.float32)
            out.append((arr, boxes.clip(0, [w, h, w, h]), rows[:, 0].astype(np.int64)))
        return out

    def item(t: Any) -> Callable:
        def fn(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> Any:
            img, target = apply_detection_transform(t, image, boxes, labels)
            target["orig_size"] = image.shape[:2]
            return img, target
        return fn

    train_t = build_detection_transform(d["image_size"], d["resize"], train=True, seed=0)
    eval_t = build_detection_transform(d["image_size"], d["resize"], train=False)
    train, val = ArrayDataset(decode("train"), item(train_t)), ArrayDataset(decode("val"), item(eval_t))
    torch.manual_seed(0)
    task = DetectionTask(num_classes=len(names), **{a: v for a, v in case["model"]["init_args"].items() if a != "optimizer"})
    dev = _device()
    detector = task.detector.to(dev)
    opt = torch.optim.AdamW(detector.parameters(), lr=0.001, weight_decay=0.0001)
    collate = lambda b: ([x[0] for x in b], [x[1] for x in b])  # noqa: E731
    train_dl = _loader(train, d["batch_size"], True, collate)
    val_dl = _loader(val, d["batch_size"], False, collate)
    start = time.time()
    for _ in range(epochs):
        detector.train()
        for images, targets in train_dl:
            tg = [{"boxes": t["boxes"].to(dev), "labels": t["labels"].to(dev)} for t in targets]
            loss = sum(detector([x.to(dev) for x in images], tg).values())
            _train_step(opt, loss)
        detector.eval()
        found = 0
        with torch.no_grad():
            for images, _ in val_dl:
                found += sum(len(r["boxes"]) for r in detector([x.to(dev) for x in images], None))
    train_s = time.time() - start
    return {"startup_s": start - t0, "train_s": train_s, "epochs_per_s": epochs / train_s,
            "images_per_epoch": _epoch_images(train_dl)}


# -- main ----------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="lenet5,resnet18,fcn8s,faster_rcnn", help="comma-separated case names")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3, help="alternated fit / plain rounds; the median counts")
    p.add_argument("--lenet-images", type=int, default=8000)
    p.add_argument("--seg-images", type=int, default=468, help="image/mask pairs (80%% train, 20%% val)")
    p.add_argument("--work-dir", type=Path, default=Path.home() / ".cache" / "visiontasks" / "bench")
    p.add_argument("--json", type=Path, default=None, help="also write the per-case medians here")
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "benchmarks"))
    from gpu_monitor import GpuSampler, fmt_util
    all_cases = cases(args.work_dir, args)
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [n for n in names if n not in all_cases]
    if unknown:
        p.error(f"unknown case(s) {unknown}; choose from {', '.join(all_cases)}")
    print(f"{'case':12s} {'fit ep/s':>9s} {'plain ep/s':>10s} {'fit/plain':>9s} {'tensor ep/s':>11s} "
          f"{'fit/tensor':>10s} {'fit start-up s':>15s} {'plain start-up s':>17s}")
    summary = []
    for name in names:
        case = all_cases[name]
        root = Path(case["prepare"]())
        runs: dict[str, list[dict[str, float]]] = {side: [] for side in ("fit", "plain", "tensor") if side in case or side == "fit"}
        for r in range(args.repeats):
            sides = list(runs) if r % 2 == 0 else list(reversed(runs))  # alternate who goes first
            for side in sides:
                with GpuSampler() as gpu:  # the device's utilisation while this side runs (None on a CPU)
                    if side == "fit":
                        row = run_fit(name, case, root, args.epochs, args.work_dir)
                    else:
                        row = case[side](case, root, args.epochs)
                runs[side].append({**row, "gpu_util": gpu.util,
                                   "images_per_s": row["epochs_per_s"] * row["images_per_epoch"]})
        med = lambda rows, key: statistics.median(r[key] for r in rows)  # noqa: E731
        f_eps, p_eps = med(runs["fit"], "epochs_per_s"), med(runs["plain"], "epochs_per_s")
        t_eps = med(runs["tensor"], "epochs_per_s") if "tensor" in runs else float("nan")
        print(f"{name:12s} {f_eps:9.3f} {p_eps:10.3f} {f_eps / p_eps:9.2f} {t_eps:11.3f} {f_eps / t_eps:10.2f} "
              f"{med(runs['fit'], 'startup_s'):15.1f} {med(runs['plain'], 'startup_s'):17.1f}", flush=True)
        accuracy = {side: [round(r["val_acc"], 3) for r in rows] for side, rows in runs.items() if rows and "val_acc" in rows[0]}
        if accuracy:
            print(f"{'':12s} val accuracy per round: {accuracy}", flush=True)
        row = {"case": name}
        for side, rows in runs.items():
            utils = [r["gpu_util"] for r in rows if r["gpu_util"] is not None]
            row[side] = {"epochs_per_s": med(rows, "epochs_per_s"), "images_per_s": med(rows, "images_per_s"),
                         "startup_s": med(rows, "startup_s"), "gpu_util": statistics.median(utils) if utils else None}
        summary.append(row)
        print(f"{'':12s} training images/s (epochs with their validation): "
              + ", ".join(f"{side} {row[side]['images_per_s']:.1f}" for side in runs)
              + "; GPU utilisation: " + ", ".join(f"{side} {fmt_util(row[side]['gpu_util'])}" for side in runs),
              flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"epochs": args.epochs, "repeats": args.repeats, "cases": summary}, indent=1))


if __name__ == "__main__":
    main()
