"""COCO JSON detection annotations (``images``, ``annotations``, ``categories``).

Categories are sorted by id; label ``k`` is the k-th category (COCO's ids have gaps, labels don't).
``bbox`` is ``[x, y, w, h]`` in pixels. Crowd annotations (``iscrowd: 1``) are skipped, as in
torchvision's detection references. Images without annotations are kept (background images).
With ``masks=True`` each annotation's ``segmentation`` (polygons in pixels, or RLE) is checked
against its image and kept on the record (see :mod:`.masks`).

With ``keypoints=True`` (COCO person-keypoints files): the categories that have keypoints declare their
``keypoints`` names (the same count for all of them) and ``skeleton`` (1-based pairs in COCO, 0-based
here); each annotation's ``keypoints`` is ``3 * P`` numbers ``x, y, v`` in pixels (an annotation without
them has none labelled) and its ``num_keypoints``, when given, counts the points with ``v > 0``. Not
COCO's standard but accepted in a category: ``flip_idx`` (else derived from left/right names) and
``sigmas`` (OKS).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from visiontasks.errors import InvalidInputError, MissingFileError

from ..missing import raise_if_missing
from .common import DatasetFormatError, DetectionRecord, DetectionSplit, check_stored_size, safe_join
from .keypoints import (KeypointSpec, check_flip_idx, check_sigmas, check_skeleton, clean_points,
                        flip_idx_from_names, points_problem)
from .masks import check_segmentation
from .reader import DetectionReader, register_reader


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise MissingFileError(f"COCO annotation file {path} does not exist")
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


def _categories(data: dict[str, Any], where: str) -> tuple[list[str], list[int]]:
    """``(names, category ids)`` sorted by id: label ``k`` is the k-th category."""
    cats = sorted(data["categories"], key=lambda c: int(c["id"]))
    if not cats:
        raise DatasetFormatError(f"{where}: the 'categories' list is empty")
    return [str(c.get("name", c["id"])) for c in cats], [int(c["id"]) for c in cats]


def coco_keypoint_spec(data: dict[str, Any], where: str) -> KeypointSpec:
    """The keypoint declaration of a COCO file's categories (those with a ``keypoints`` list); the
    skeleton converted from COCO's 1-based pairs to 0-based."""
    cats = [c for c in sorted(data["categories"], key=lambda c: int(c["id"])) if c.get("keypoints")]
    if not cats:
        raise DatasetFormatError(
            f"{where}: no category declares 'keypoints' (names of the points); keypoints: true needs a COCO "
            "person-keypoints style file, or set keypoints: false")
    first = cats[0]
    for c in cats[1:]:
        if list(c["keypoints"]) != list(first["keypoints"]):
            a, b = len(first["keypoints"]), len(c["keypoints"])
            what = f"{a} vs {b} points" if a != b else "the same count, other names"
            raise DatasetFormatError(
                f"{where}: categories {first['id']} and {c['id']} declare different keypoints ({what}); every "
                "object must have the same points (a category without points declares none)")
    names = [str(n) for n in first["keypoints"]]
    cat_where = f"{where}, category {first['id']}"
    skeleton = check_skeleton(first.get("skeleton"), len(names), cat_where, base=1)
    flip = first.get("flip_idx")
    flip_idx = check_flip_idx(flip, len(names), cat_where) if flip is not None else flip_idx_from_names(names)
    return KeypointSpec(names, skeleton, flip_idx, check_sigmas(first.get("sigmas"), len(names), cat_where), where)


def annotation_keypoints(ann: dict[str, Any], num_keypoints: int, size: tuple[int, int] | None,
                         where: str) -> np.ndarray:
    """float32 ``[P, 3]`` of one annotation (zeros when it has no ``keypoints``); a wrong count, a
    visibility outside {0, 1, 2}, a labelled point outside the image, or a ``num_keypoints`` that
    disagrees is a :class:`DatasetFormatError` naming ``where`` (file and annotation id)."""
    flat = ann.get("keypoints")
    if flat is None:
        return np.zeros((num_keypoints, 3), np.float32)
    if not isinstance(flat, (list, tuple)) or len(flat) != 3 * num_keypoints:
        n = len(flat) if isinstance(flat, (list, tuple)) else flat
        raise DatasetFormatError(
            f"{where} has {n} keypoint values; the categories declare {num_keypoints} points, so 3 x "
            f"{num_keypoints} = {3 * num_keypoints} (x, y, v triples)")
    try:
        points = np.asarray(flat, np.float64).reshape(num_keypoints, 3)
    except (TypeError, ValueError):
        raise DatasetFormatError(f"{where}: keypoints must be numbers (x, y, v triples)") from None
    problem = points_problem(points, size)
    if problem:
        raise DatasetFormatError(f"{where}: {problem}")
    stated = ann.get("num_keypoints")
    if stated is not None and int(stated) != int((points[:, 2] > 0).sum()):
        raise DatasetFormatError(
            f"{where}: num_keypoints {stated} but {int((points[:, 2] > 0).sum())} points have v > 0")
    return clean_points(points)


def read_coco(
    annotation_file: str | Path,
    image_dir: str | Path,
    root: str | Path,
    name: str | None = None,
    check_files: bool = True,
    data: dict[str, Any] | None = None,
    masks: bool = False,
    keypoints: bool = False,
) -> DetectionSplit:
    """Read one COCO split.

    ``image_dir`` (relative to ``root`` or absolute inside it) holds the files named by each image's
    ``file_name``; a ``file_name`` leading outside ``root`` is refused, and one naming a missing file
    is an error naming both the JSON and the image. ``data``: the file's content when already loaded.
    ``masks``: read each annotation's ``segmentation`` too (records carry ``masks``); ``keypoints``:
    each annotation's ``keypoints`` (records carry ``keypoints`` [K, P, 3]; see the module's notes).
    """
    annotation_file = Path(annotation_file)
    data = data if data is not None else _load(annotation_file)
    where = str(annotation_file)
    image_root = safe_join(root, image_dir, where)

    names, ids = _categories(data, where)
    cat_to_label = {cid: i for i, cid in enumerate(ids)}
    num_keypoints = coco_keypoint_spec(data, where).num_keypoints if keypoints else 0

    records: dict[int, DetectionRecord] = {}
    points: dict[int, list[np.ndarray]] = {}
    boxes: dict[int, list[list[float]]] = {}
    labels: dict[int, list[int]] = {}
    segs: dict[int, list[Any]] = {}
    missing: list[str] = []  # reported together after the loop
    for img in data["images"]:
        try:
            image_id, file_name = int(img["id"]), str(img["file_name"])
        except (KeyError, TypeError, ValueError):
            raise DatasetFormatError(f"{where}: image entry {img!r} needs 'id' and 'file_name'") from None
        path = safe_join(root, Path(image_root, file_name), f"{where} (image id {image_id})")
        if check_files and not path.is_file():
            missing.append(f"image id {image_id} names {path}")
            continue
        size = None
        if img.get("height") and img.get("width"):
            size = (int(img["height"]), int(img["width"]))
            if check_files:
                size = check_stored_size(path, size, f"{where} (image id {image_id})")
        if image_id in records:
            raise DatasetFormatError(f"{where}: image id {image_id} appears twice")
        records[image_id] = DetectionRecord(path, image_id, np.zeros((0, 4), np.float32),
                                            np.zeros(0, np.int64), size)
        boxes[image_id], labels[image_id], segs[image_id], points[image_id] = [], [], [], []
    raise_if_missing(where, missing, len(data["images"]), hint="add the images or remove their entries",
                     error=DatasetFormatError)

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
        try:
            x, y, w, h = (float(v) for v in bbox)
        except (TypeError, ValueError):
            raise DatasetFormatError(
                f"{where}: annotation {ann_id} has bbox {bbox!r}, not [x, y, w, h] (four numbers, pixels)"
            ) from None
        if masks:
            if "segmentation" not in ann:
                raise DatasetFormatError(f"{where}: annotation {ann_id} has no 'segmentation' (masks: true needs one)")
            segs[image_id].append(check_segmentation(ann["segmentation"], records[image_id].size,
                                                     f"{where}: annotation {ann_id}"))
        if keypoints:
            points[image_id].append(annotation_keypoints(ann, num_keypoints, records[image_id].size,
                                                         f"{where}: annotation {ann_id}"))
        boxes[image_id].append([x, y, x + w, y + h])
        labels[image_id].append(cat_to_label[cat])

    split = DetectionSplit(name or f"COCO {annotation_file.name}", [], names, sorted(cat_to_label))
    for image_id, rec in records.items():
        rec.boxes, rec.labels = np.array(boxes[image_id], np.float32), np.array(labels[image_id], np.int64)
        rec.masks = segs[image_id] if masks else None
        if keypoints:
            rec.keypoints = np.array(points[image_id], np.float32).reshape(-1, num_keypoints, 3)
        split.add(rec, f"{annotation_file.name}, image id {image_id}")
    split.warn_dropped()
    return split


def write_coco(
    path: str | Path,
    records: list[DetectionRecord],
    class_names: list[str],
    image_dir: str | Path,
    category_ids: list[int] | None = None,
    keypoint_spec: KeypointSpec | None = None,
) -> None:
    """Write ``records`` as a COCO detection JSON; ``file_name`` is relative to ``image_dir``. With
    ``keypoint_spec`` every category declares its ``keypoints`` and 1-based ``skeleton`` (and the
    non-standard ``sigmas`` when the spec has them) and each annotation has ``keypoints`` and
    ``num_keypoints`` from the records' keypoints."""
    category_ids = category_ids or list(range(1, len(class_names) + 1))
    images, anns = [], []
    for rec in records:
        if rec.size is None:
            raise ValueError(f"record {rec.path} needs its size to be written as COCO")
        h, w = rec.size
        images.append({"id": rec.image_id, "file_name": Path(rec.path).relative_to(image_dir).as_posix(),
                       "height": h, "width": w})
        for k, (box, label) in enumerate(zip(rec.boxes.tolist(), rec.labels.tolist())):
            x1, y1, x2, y2 = box
            anns.append({"id": len(anns) + 1, "image_id": rec.image_id,
                         "category_id": category_ids[label], "bbox": [x1, y1, x2 - x1, y2 - y1],
                         "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
            if rec.masks is not None:
                anns[-1]["segmentation"] = rec.masks[k]
            if keypoint_spec is not None and rec.keypoints is not None:
                pts = rec.keypoints[k]
                anns[-1]["keypoints"] = [round(float(v), 2) for v in pts.reshape(-1)]
                anns[-1]["num_keypoints"] = int((pts[:, 2] > 0).sum())
    cats = [{"id": cid, "name": n, "supercategory": "shape"} for cid, n in zip(category_ids, class_names)]
    if keypoint_spec is not None:
        for cat in cats:
            cat.update(keypoints=list(keypoint_spec.names),
                       skeleton=[[a + 1, b + 1] for a, b in keypoint_spec.skeleton])
            if keypoint_spec.sigmas is not None:
                cat["sigmas"] = list(keypoint_spec.sigmas)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"images": images, "annotations": anns, "categories": cats}, f)


@register_reader("coco")
class CocoReader(DetectionReader):
    """COCO JSON splits. A split spec is a name ``S`` meaning
    ``{annotations: annotations/instances_S.json, images: images/S}``, or such a dict. The class table
    is the ``categories`` of the first split's file (kept, so that split is not parsed twice)."""

    has_masks = True
    has_keypoints = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: dict[Path, dict[str, Any]] = {}

    def _files(self, spec: Any, stage: str = "split") -> tuple[Path, str]:
        if isinstance(spec, str):
            spec = {"annotations": f"annotations/instances_{spec}.json", "images": f"images/{spec}"}
        if not isinstance(spec, dict) or set(spec) != {"annotations", "images"}:
            keys = sorted(spec) if isinstance(spec, dict) else spec
            raise InvalidInputError(f"COCO split {stage}: expected keys annotations and images, got {keys}")
        return safe_join(self.root, spec["annotations"], f"{stage} split"), spec["images"]

    def _load(self, path: Path) -> dict[str, Any]:
        if path not in self._loaded:
            self._loaded[path] = _load(path)
        return self._loaded[path]

    def _first_file(self) -> Path | None:
        for stage, spec in self.splits.items():
            if spec is not None and not (isinstance(spec, dict) and set(spec) == {"images"}):
                return self._files(spec, stage)[0]
        return None

    def class_table(self) -> tuple[list[str], list[int]]:
        path = self._first_file()
        if path is not None:
            return _categories(self._load(path), str(path))
        names = self.given_names or []
        return names, list(range(len(names)))

    def keypoint_spec(self) -> KeypointSpec:
        path = self._first_file()
        if path is None:
            raise InvalidInputError(f"COCO dataset {self.root}: keypoints: true needs an annotated split")
        return coco_keypoint_spec(self._load(path), str(path))

    def samples(self, spec: Any, name: str, class_names: list[str]) -> DetectionSplit:
        path, images = self._files(spec, name)
        return read_coco(path, images, self.root, name=name, data=self._loaded.pop(path, None), masks=self.masks,
                         keypoints=self.keypoints)

    def check_split(self, spec: Any, split: str, class_names: list[str]) -> tuple[list[Any], list[Any]]:
        from .check import coco_split_jobs  # every image entry and annotation

        try:
            path, images = self._files(spec, split)
        except (ValueError, DatasetFormatError):
            return super().check_split(spec, split, class_names)  # reports the bad spec
        return coco_split_jobs(path, images, self.root, split, keypoints=self.keypoints)

    @staticmethod
    def written_category_ids(num_classes: int) -> list[int]:
        return list(range(1, num_classes + 1))  # COCO's ids start at 1

    @classmethod
    def write(cls, root: Path, splits: dict[str, list[DetectionRecord]], class_names: list[str],
              keypoint_spec: KeypointSpec | None = None) -> None:
        for split, records in splits.items():
            write_coco(root / f"annotations/instances_{split}.json", records, class_names, root / "images" / split,
                       keypoint_spec=keypoint_spec)
