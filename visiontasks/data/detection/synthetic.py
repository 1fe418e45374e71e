"""A synthetic detection dataset written to disk in the real COCO, VOC or YOLO layout.

Scenes come from :func:`visiontasks.data.shapes.render_scene` (coloured shapes of several classes
and sizes on textured backgrounds); boxes are the tight boxes of each shape's visible pixels. A
fraction of the images are background images (no objects). The folder gets a ``synthetic.json``
manifest: a folder with the same settings is reused, one with other settings is regenerated, and a
folder without a manifest is never overwritten.

Layouts (the datamodule's defaults read them without further settings):

* ``coco``: ``images/<split>/NNNNNN.png`` + ``annotations/instances_<split>.json``
* ``voc``:  ``JPEGImages/<split>_NNNNNN.png`` + ``Annotations/*.xml`` + ``ImageSets/Main/<split>.txt``
* ``yolo``: ``images/<split>/NNNNNN.png`` + ``labels/<split>/NNNNNN.txt`` + ``data.yaml``
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml
from PIL import Image

from visiontasks.data.shapes import SHAPE_NAMES, render_scene

from .coco import write_coco
from .common import DetectionRecord
from .voc import write_voc_xml
from .yolo import write_yolo_labels

FORMATS = ("coco", "voc", "yolo")
_VERSION = 1


def synthetic_class_names(num_classes: int) -> list[str]:
    """The shape names of classes ``0..num_classes-1``."""
    if not 1 <= num_classes <= len(SHAPE_NAMES):
        raise ValueError(f"num_classes must be in [1, {len(SHAPE_NAMES)}], got {num_classes}")
    return list(SHAPE_NAMES[:num_classes])


def write_synthetic_detection(
    root: str | Path,
    format: str = "coco",
    splits: dict[str, int] | None = None,
    image_size: int | Sequence[int] = 128,
    num_classes: int = 3,
    min_objects: int = 1,
    max_objects: int = 3,
    size_range: Sequence[float] = (0.1, 0.3),
    background_fraction: float = 0.05,
    seed: int = 0,
) -> Path:
    """Generate (or reuse) the dataset under ``root``; returns ``root``.

    ``splits`` maps split names to image counts (default ``{"train": 200, "val": 50}``);
    ``image_size`` is ``H`` or ``(H, W)``; ``size_range`` is the shape radius as a fraction of the
    shorter side. Each split uses its own random stream derived from ``seed``.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    splits = dict(splits or {"train": 200, "val": 50})
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(int(v) for v in image_size)
    settings = {
        "version": _VERSION, "format": format, "splits": splits, "image_size": [h, w],
        "num_classes": num_classes, "min_objects": min_objects, "max_objects": max_objects,
        "size_range": [float(v) for v in size_range], "background_fraction": background_fraction,
        "seed": seed,
    }
    root = Path(root)
    manifest = root / "synthetic.json"
    if manifest.is_file():
        try:
            old = json.loads(manifest.read_text())
        except json.JSONDecodeError:
            old = None
        if old == settings:
            return root
    elif root.exists() and any(root.iterdir()):
        raise FileExistsError(
            f"{root} exists and is not a synthetic dataset (no synthetic.json); choose another root"
        )
    names = synthetic_class_names(num_classes)
    # Write into a fresh folder next to root, then swap it in: a half-written dataset is never read.
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        for split_index, (split, count) in enumerate(splits.items()):
            rng = np.random.default_rng([seed, split_index])
            records = []
            for i in range(count):
                background = rng.random() < background_fraction
                image, instances = render_scene(
                    rng, h, w, num_classes,
                    max_objects=0 if background else max_objects,
                    min_objects=0 if background else min_objects,
                    size_range=tuple(size_range),
                )
                rel = f"JPEGImages/{split}_{i:06d}.png" if format == "voc" else f"images/{split}/{i:06d}.png"
                path = tmp / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(path)
                boxes = np.array([inst.box for inst in instances], np.float32).reshape(-1, 4)
                labels = np.array([inst.label for inst in instances], np.int64)
                records.append(DetectionRecord(path, i, boxes, labels, (h, w)))
            _write_split(tmp, format, split, records, names)
        if format == "yolo":
            data = {"path": ".", **{s: f"images/{s}" for s in splits}, "names": dict(enumerate(names))}
            (tmp / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        (tmp / "synthetic.json").write_text(json.dumps(settings, indent=1))
        if root.exists():
            old_dir = root.with_name(f".{root.name}.old-{os.getpid()}")
            root.rename(old_dir)
            tmp.rename(root)
            shutil.rmtree(old_dir, ignore_errors=True)
        else:
            tmp.rename(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _write_split(root: Path, format: str, split: str, records: list[DetectionRecord], names: list[str]) -> None:
    if format == "coco":
        write_coco(root / f"annotations/instances_{split}.json", records, names, root / "images" / split)
    elif format == "voc":
        ids = []
        for rec in records:
            ids.append(rec.path.stem)
            write_voc_xml(root / "Annotations" / f"{rec.path.stem}.xml", rec, names)
        sets = root / "ImageSets" / "Main"
        sets.mkdir(parents=True, exist_ok=True)
        (sets / f"{split}.txt").write_text("\n".join(ids) + "\n")
    else:
        for rec in records:
            write_yolo_labels(root / "labels" / split / f"{rec.path.stem}.txt", rec)
