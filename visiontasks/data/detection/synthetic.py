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

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from visiontasks.data.shapes import SHAPE_NAMES, render_scene
from visiontasks.data.synthetic import build_synthetic
from visiontasks.errors import InvalidInputError
from visiontasks.preprocessing import pair

from .common import DetectionRecord
from .masks import encode_mask
from .reader import DETECTION_READERS

_VERSION = 1


def synthetic_class_names(num_classes: int) -> list[str]:
    """The shape names of classes ``0..num_classes-1``."""
    if not 1 <= num_classes <= len(SHAPE_NAMES):
        raise InvalidInputError(f"num_classes must be in [1, {len(SHAPE_NAMES)}], got {num_classes}")
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
    masks: bool = False,
) -> Path:
    """Generate (or reuse) the dataset under ``root`` in the layout of the reader ``format``;
    returns ``root``.

    ``splits`` maps split names to image counts (default ``{"train": 200, "val": 50}``);
    ``image_size`` is ``H`` or ``(H, W)``; ``size_range`` is the shape radius as a fraction of the
    shorter side. Each split uses its own random stream derived from ``seed``. ``masks``: also write
    each shape's exact visible mask (COCO RLE ``segmentation``; COCO layout only).
    """
    if masks and format != "coco":
        raise ValueError(f"synthetic instance masks are written in the coco layout, not {format!r}")
    reader = DETECTION_READERS.get(format)
    splits = dict(splits or {"train": 200, "val": 50})
    h, w = pair(image_size)
    settings = {
        "version": _VERSION, "format": format, "splits": splits, "image_size": [h, w],
        "num_classes": num_classes, "min_objects": min_objects, "max_objects": max_objects,
        "size_range": [float(v) for v in size_range], "background_fraction": background_fraction,
        "seed": seed,
        **({"masks": True} if masks else {}),  # absent when off: existing detection sets stay valid
    }
    names = synthetic_class_names(num_classes)

    def write(folder: Path) -> None:
        written: dict[str, list[DetectionRecord]] = {}
        for split_index, (split, count) in enumerate(splits.items()):
            rng = np.random.default_rng([seed, split_index])
            records = written.setdefault(split, [])
            for i in range(count):
                background = rng.random() < background_fraction
                image, instances = render_scene(
                    rng, h, w, num_classes,
                    max_objects=0 if background else max_objects,
                    min_objects=0 if background else min_objects,
                    size_range=tuple(size_range),
                )
                path = folder / reader.image_file(split, i)
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(path)
                boxes = np.array([inst.box for inst in instances], np.float32).reshape(-1, 4)
                labels = np.array([inst.label for inst in instances], np.int64)
                segs = [encode_mask(inst.mask) for inst in instances] if masks else None
                records.append(DetectionRecord(path, i, boxes, labels, (h, w), segs))
        reader.write(folder, written, names)

    return build_synthetic(root, settings, write)
