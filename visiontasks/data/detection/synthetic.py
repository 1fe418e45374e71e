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

With ``keypoints=True`` the scenes are polygons whose corners are the keypoints
(:func:`visiontasks.data.shapes.render_corner_scene`: ``num_keypoints`` 4, quadrilaterals ``square``,
``rectangle``, ``trapezoid``, or 3, triangles ``triangle``, ``right_triangle``), written as COCO
person-keypoints style JSON or YOLO pose labels with their names, skeleton (the polygon's edges),
flip pairs and OKS sigmas (``keypoint_sigma`` for every corner).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from visiontasks.data.shapes import (CORNER_FLIP, CORNER_NAMES, KEYPOINT_SHAPES, SHAPE_NAMES, CornerInstance,
                                     corner_skeleton, render_corner_scene, render_scene)
from visiontasks.data.synthetic import build_synthetic
from visiontasks.errors import InvalidInputError
from visiontasks.preprocessing import pair

from .common import DetectionRecord
from .keypoints import KeypointSpec
from .masks import encode_mask
from .reader import DETECTION_READERS

_VERSION = 1


def synthetic_class_names(num_classes: int, num_keypoints: int | None = None) -> list[str]:
    """The shape names of classes ``0..num_classes-1`` (with ``num_keypoints``: of the corner shapes)."""
    if num_keypoints is not None and num_keypoints not in KEYPOINT_SHAPES:
        raise InvalidInputError(f"synthetic num_keypoints must be one of {sorted(KEYPOINT_SHAPES)} (corners of "
                                f"triangles or quadrilaterals), got {num_keypoints}")
    names = SHAPE_NAMES if num_keypoints is None else KEYPOINT_SHAPES[num_keypoints]
    if not 1 <= num_classes <= len(names):
        raise InvalidInputError(f"num_classes must be in [1, {len(names)}], got {num_classes}")
    return list(names[:num_classes])


def synthetic_keypoint_spec(num_keypoints: int = 4, keypoint_sigma: float = 0.05,
                            source: str = "synthetic") -> KeypointSpec:
    """What the synthetic corner shapes declare: corner names by place, the polygon's edges, the
    flip pairs, one OKS sigma for every corner."""
    synthetic_class_names(1, num_keypoints)  # checks num_keypoints
    return KeypointSpec(list(CORNER_NAMES[num_keypoints]), corner_skeleton(num_keypoints),
                        list(CORNER_FLIP[num_keypoints]), [float(keypoint_sigma)] * num_keypoints, source)


def _corner_record(path: Path, index: int, corners: list[CornerInstance], num_keypoints: int,
                   size: tuple[int, int]) -> DetectionRecord:
    """The record of one corner scene: boxes, labels and every corner as a visible point (v = 2)."""
    points = np.zeros((len(corners), num_keypoints, 3), np.float32)
    for k, c in enumerate(corners):
        points[k, :, :2], points[k, :, 2] = c.corners, 2
    return DetectionRecord(path, index, np.array([c.box for c in corners], np.float32).reshape(-1, 4),
                           np.array([c.label for c in corners], np.int64), size, keypoints=points)


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
    keypoints: bool = False,
    num_keypoints: int = 4,
    max_rotation: float = 30.0,
    keypoint_sigma: float = 0.05,
) -> Path:
    """Generate (or reuse) the dataset under ``root`` in the layout of the reader ``format``;
    returns ``root``.

    ``splits`` maps split names to image counts (default ``{"train": 200, "val": 50}``);
    ``image_size`` is ``H`` or ``(H, W)``; ``size_range`` is the shape radius as a fraction of the
    shorter side. Each split uses its own random stream derived from ``seed``. ``masks``: also write
    each shape's exact visible mask (COCO RLE ``segmentation``; COCO layout only). ``keypoints``: the
    corner shapes instead (``num_keypoints`` 3 or 4 corners, turned by up to ``max_rotation``
    degrees, ``keypoint_sigma`` declared as every corner's OKS sigma; COCO or YOLO layout).
    """
    if masks and format != "coco":
        raise ValueError(f"synthetic instance masks are written in the coco layout, not {format!r}")
    if keypoints and masks:
        raise ValueError("the synthetic corner shapes (keypoints) have no instance masks; use one of the two")
    if keypoints and not 0 <= max_rotation < 45:
        raise InvalidInputError(
            f"synthetic max_rotation must be in [0, 45) degrees (corners named by place), got {max_rotation}")
    reader = DETECTION_READERS.get(format)
    splits = dict(splits or {"train": 200, "val": 50})
    h, w = pair(image_size)
    settings = {
        "version": _VERSION, "format": format, "splits": splits, "image_size": [h, w],
        "num_classes": num_classes, "min_objects": min_objects, "max_objects": max_objects,
        "size_range": [float(v) for v in size_range], "background_fraction": background_fraction,
        "seed": seed,
        **({"masks": True} if masks else {}),  # absent when off: existing detection sets stay valid
        **({"keypoints": True, "num_keypoints": num_keypoints, "max_rotation": float(max_rotation),
            "keypoint_sigma": float(keypoint_sigma)} if keypoints else {}),
    }
    names = synthetic_class_names(num_classes, num_keypoints if keypoints else None)
    spec = synthetic_keypoint_spec(num_keypoints, keypoint_sigma) if keypoints else None

    def write(folder: Path) -> None:
        written: dict[str, list[DetectionRecord]] = {}
        for split_index, (split, count) in enumerate(splits.items()):
            rng = np.random.default_rng([seed, split_index])
            records = written.setdefault(split, [])
            for i in range(count):
                background = rng.random() < background_fraction
                path = folder / reader.image_file(split, i)
                path.parent.mkdir(parents=True, exist_ok=True)
                if keypoints:
                    image, corners = render_corner_scene(
                        rng, h, w, num_keypoints, num_classes, max_objects=0 if background else max_objects,
                        min_objects=0 if background else min_objects, size_range=tuple(size_range),
                        max_rotation=max_rotation)
                    Image.fromarray(image).save(path)
                    records.append(_corner_record(path, i, corners, num_keypoints, (h, w)))
                    continue
                image, instances = render_scene(
                    rng, h, w, num_classes,
                    max_objects=0 if background else max_objects,
                    min_objects=0 if background else min_objects,
                    size_range=tuple(size_range),
                )
                Image.fromarray(image).save(path)
                boxes = np.array([inst.box for inst in instances], np.float32).reshape(-1, 4)
                labels = np.array([inst.label for inst in instances], np.int64)
                segs = [encode_mask(inst.mask) for inst in instances] if masks else None
                records.append(DetectionRecord(path, i, boxes, labels, (h, w), segs))
        reader.write(folder, written, names, spec)

    return build_synthetic(root, settings, write)
