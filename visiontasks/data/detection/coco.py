"""COCO JSON detection annotations (``images``, ``annotations``, ``categories``).

Categories are sorted by id; label ``k`` is the k-th category (COCO's ids have gaps, labels don't).
``bbox`` is ``[x, y, w, h]`` in pixels. Crowd annotations (``iscrowd: 1``) are skipped, as in
torchvision's detection references. Images without annotations are kept (background images).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .common import (
    DatasetFormatError,
    DetectionRecord,
    DetectionSplit,
    clean_boxes,
    safe_join,
    warn_dropped,
)


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"COCO annotation file {path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise DatasetFormatError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{path}: expected a JSON object with 'images' and 'categories'")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetFormatError(f"{path}: missing the {key!r} list of a COCO annotation file")
    return data


def read_coco(
    annotation_file: str | Path,
    image_dir: str | Path,
    root: str | Path,
    name: str | None = None,
    check_files: bool = True,
) -> DetectionSplit:
    """Read one COCO split.

    ``image_dir`` (relative to ``root`` or absolute inside it) holds the files named by each image's
    ``file_name``; a ``file_name`` leading outside ``root`` is refused, and one naming a missing file
    is an error naming both the JSON and the image.
    """
    annotation_file = Path(annotation_file)
    data = _load(annotation_file)
    where = str(annotation_file)
    image_root = safe_join(root, image_dir, where)

    cats = sorted(data["categories"], key=lambda c: int(c["id"]))
    cat_to_label = {int(c["id"]): i for i, c in enumerate(cats)}
    names = [str(c.get("name", c["id"])) for c in cats]
    if not cats:
        raise DatasetFormatError(f"{where}: the 'categories' list is empty")

    records: dict[int, DetectionRecord] = {}
    boxes: dict[int, list[list[float]]] = {}
    labels: dict[int, list[int]] = {}
    for img in data["images"]:
        try:
            image_id, file_name = int(img["id"]), str(img["file_name"])
        except (KeyError, TypeError, ValueError):
            raise DatasetFormatError(f"{where}: image entry {img!r} needs 'id' and 'file_name'") from None
        path = safe_join(root, Path(image_root, file_name), f"{where} (image id {image_id})")
        if check_files and not path.is_file():
            raise DatasetFormatError(
                f"{where}: image id {image_id} names {path}, which does not exist"
            )
        size = None
        if img.get("height") and img.get("width"):
            size = (int(img["height"]), int(img["width"]))
        if image_id in records:
            raise DatasetFormatError(f"{where}: image id {image_id} appears twice")
        records[image_id] = DetectionRecord(path, image_id, np.zeros((0, 4), np.float32),
                                            np.zeros(0, np.int64), size)
        boxes[image_id], labels[image_id] = [], []

    for ann in data.get("annotations", []):
        ann_id = ann.get("id", "?")
        image_id = ann.get("image_id")
        if image_id not in records:
            raise DatasetFormatError(
                f"{where}: annotation {ann_id} names image id {image_id}, which is not in 'images'"
            )
        cat = ann.get("category_id")
        if cat not in cat_to_label:
            raise DatasetFormatError(
                f"{where}: annotation {ann_id} has category_id {cat}, not among the categories "
                f"{sorted(cat_to_label)}"
            )
        if ann.get("iscrowd", 0):
            continue
        bbox = ann.get("bbox")
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            raise DatasetFormatError(f"{where}: annotation {ann_id} has bbox {bbox!r}, not [x, y, w, h]")
        x, y, w, h = (float(v) for v in bbox)
        boxes[image_id].append([x, y, x + w, y + h])
        labels[image_id].append(cat_to_label[cat])

    split = DetectionSplit(name or f"COCO {annotation_file.name}", [], names, sorted(cat_to_label))
    first_bad = None
    for image_id, rec in records.items():
        b, lab, dropped = clean_boxes(np.array(boxes[image_id], np.float32), labels[image_id], rec.size)
        if dropped and first_bad is None:
            first_bad = f"{annotation_file.name}, image id {image_id}"
        split.dropped_boxes += dropped
        rec.boxes, rec.labels = b, lab
        split.records.append(rec)
    warn_dropped(split, first_bad)
    return split


def write_coco(
    path: str | Path,
    records: list[DetectionRecord],
    class_names: list[str],
    image_dir: str | Path,
    category_ids: list[int] | None = None,
) -> None:
    """Write ``records`` as a COCO detection JSON; ``file_name`` is relative to ``image_dir``."""
    category_ids = category_ids or list(range(1, len(class_names) + 1))
    images, anns = [], []
    for rec in records:
        if rec.size is None:
            raise ValueError(f"record {rec.path} needs its size to be written as COCO")
        h, w = rec.size
        images.append({"id": rec.image_id, "file_name": Path(rec.path).relative_to(image_dir).as_posix(),
                       "height": h, "width": w})
        for box, label in zip(rec.boxes.tolist(), rec.labels.tolist()):
            x1, y1, x2, y2 = box
            anns.append({"id": len(anns) + 1, "image_id": rec.image_id,
                         "category_id": category_ids[label], "bbox": [x1, y1, x2 - x1, y2 - y1],
                         "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    cats = [{"id": cid, "name": n, "supercategory": "shape"} for cid, n in zip(category_ids, class_names)]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"images": images, "annotations": anns, "categories": cats}, f)
