"""The data check of detection splits: each reader lists its images with their raw boxes and the
problems of its annotation files (all of them, not the first); one job per image then decodes it and
checks the boxes against the decoded size.

COCO and YOLO have their own lenient listing (every entry, every line); other formats fall back to
the reader itself (:func:`split_jobs_from_reader`: its first error per split).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from visiontasks.errors import UserInputError
from visiontasks.preprocessing import Preprocessing, pair

from ..check import CheckJob, ImageJob, Problem, SampleInfo, collect, read_checked
from ..io import list_image_files
from .common import DatasetFormatError, safe_join

if TYPE_CHECKING:
    from .reader import DetectionReader

SplitJobs = tuple[list[CheckJob], list[Problem]]


def _check_boxes(info: SampleInfo, boxes: np.ndarray, labels: np.ndarray, where: list[str],
                 lines: list[int | None]) -> None:
    """Warnings for boxes the reader would clip or drop (against the decoded size); sets
    ``info.boxes``/``info.labels`` to what training sees (clipped; degenerate boxes left out)."""
    h, w = info.size or (np.inf, np.inf)
    keep = np.ones(len(boxes), bool)
    for k, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        box = f"box [{x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}] (xyxy px)"
        if not np.isfinite([x1, y1, x2, y2]).all() or x2 <= x1 or y2 <= y1:
            info.problem("warning", f"{box} has no area; it is dropped", "fix or delete it", where[k], lines[k])
            keep[k] = False
            continue
        tol = 1.0  # a pixel of rounding is common (VOC's 1-based coordinates, float exports)
        if x1 < -tol or y1 < -tol or x2 > w + tol or y2 > h + tol:
            if min(x2, w) <= max(x1, 0) or min(y2, h) <= max(y1, 0):
                info.problem("warning", f"{box} lies outside the {w}x{h} image; it is dropped",
                             "fix the box (are x and y swapped, or the coordinates of another image?)",
                             where[k], lines[k])
                keep[k] = False
            else:
                info.problem("warning", f"{box} reaches outside the {w}x{h} image; it is clipped",
                             "check the annotation", where[k], lines[k])
    out = boxes[keep].astype(np.float32).reshape(-1, 4)
    if info.size is not None:
        out[:, 0::2] = out[:, 0::2].clip(0, w)
        out[:, 1::2] = out[:, 1::2].clip(0, h)
    info.boxes, info.labels = out, np.asarray(labels, np.int64)[keep]


@dataclass
class BoxesJob:
    """Decode one image and check its boxes (float [K, 4] xyxy file pixels, as annotated) against
    its size; ``size``: (H, W) the annotation states, if it does; ``where``/``lines``: each box's
    annotation (file or "file, annotation id") and line."""

    split: str
    path: str
    boxes: np.ndarray
    labels: np.ndarray
    size: tuple[int, int] | None = None
    where: list[str] = field(default_factory=list)
    lines: list[int | None] = field(default_factory=list)

    def __call__(self) -> SampleInfo:
        info = SampleInfo(self.split, self.path)
        info.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        info.labels = np.asarray(self.labels, np.int64)
        if read_checked(info) is None:
            return info
        where = self.where or [self.path] * len(info.boxes)
        lines = self.lines or [None] * len(info.boxes)
        if self.size is not None and tuple(self.size) != info.size:
            (h, w), (fh, fw) = self.size, info.size
            info.problem("warning", f"the annotation gives the size {w}x{h} but the file is {fw}x{fh} "
                         "(after its EXIF orientation)", "check that the annotation belongs to this file")
        _check_boxes(info, info.boxes, info.labels, where, lines)
        return info


@dataclass
class YoloJob:
    """Decode one image and read its YOLO label file line by line (every bad line is a problem)."""

    split: str
    path: str
    label_file: str
    class_ids: list[int]  # the YAML's class id of each label
    kpt_shape: tuple[int, int] | None = None  # (P, dims) of pose labels

    def __call__(self) -> SampleInfo:
        from .yolo import parse_label_line

        info = SampleInfo(self.split, self.path)
        image = read_checked(info)
        lbl = Path(self.label_file)
        boxes: list[list[float]] = []
        labels: list[int] = []
        lines: list[int | None] = []
        if image is not None and lbl.is_file():
            for n, line in enumerate(lbl.read_text(errors="replace").splitlines(), 1):
                try:
                    parsed = parse_label_line(line, n, lbl, self.class_ids, info.size, kpt_shape=self.kpt_shape)
                except DatasetFormatError as err:
                    what = str(err).replace(f"{lbl}, line {n}: ", "")
                    info.problem("error", what, "fix or delete the line", str(lbl), n)
                    continue
                if parsed is not None:
                    boxes.append(parsed[0])
                    labels.append(parsed[1])
                    lines.append(n)
        _check_boxes(info, np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64),
                     [str(lbl)] * len(boxes), lines)
        return info


def folder_jobs(root: Path, folder: str, split: str) -> SplitJobs:
    """A ``{images: folder}`` split (images without annotations, for predict)."""
    path, problems = collect(lambda: safe_join(root, folder, f"{split} images"), str(root), split)
    files = list_image_files(path, recursive=True) if path is not None else []
    return [ImageJob(split, str(f)) for f in files], problems


def split_jobs_from_reader(reader: DetectionReader, spec: Any, split: str, class_names: list[str]) -> SplitJobs:
    """Any reader: its records (boxes as it returns them, already clipped) and its error or
    warnings as problems; a format error stops the listing of that split at the first."""
    records, problems = collect(lambda: reader.samples(spec, split, class_names).records,
                                str(reader.root), split, "fix the annotation")
    for p in problems:
        p.split = split
    jobs: list[CheckJob] = [BoxesJob(split, str(r.path), r.boxes, r.labels, r.size) for r in records or []]
    return jobs, problems


def yolo_split_jobs(yaml_path: Path, spec: Any, split: str, keypoints: bool = False) -> SplitJobs:
    """Every image of YOLO split ``spec`` (a YAML key) with its label file, a problem for every image a
    list names that does not exist, and a warning for every label file without an image; with
    ``keypoints`` the lines are pose lines of the YAML's ``kpt_shape``."""
    from .yolo import _list_images, find_yaml, label_path_for, load_yolo_yaml, yolo_class_ids, yolo_keypoint_spec

    where = str(yaml_path)
    loaded, problems = collect(lambda: (find_yaml(yaml_path), *load_yolo_yaml(yaml_path)), where, split)
    if loaded is None:
        return [], problems
    yaml_file, cfg, root, names = loaded
    kpt_shape = None
    if keypoints or "kpt_shape" in cfg:  # pose lines, read for their boxes only without keypoints
        kspec, found = collect(lambda: yolo_keypoint_spec(yaml_file), where, split)
        problems += found
        if kspec is None:
            return [], problems
        kpt_shape = (kspec.num_keypoints, int(cfg["kpt_shape"][1]))
    if not cfg.get(str(spec)):
        problems.append(Problem("error", str(yaml_file), f"no {spec!r} entry (keys: {sorted(cfg)})",
                                f"add '{spec}: images/...' to the YAML", split=split))
        return [], problems
    entries = cfg[str(spec)] if isinstance(cfg[str(spec)], list) else [cfg[str(spec)]]
    images: list[Path] = []
    folders: list[Path] = []
    for entry in entries:
        found, more = collect(lambda e=entry: _list_images(root, str(e), f"{yaml_file} ({spec})"),
                              str(yaml_file), split)
        problems += more
        if found:
            images += found[0]
            folders += found[1]
    jobs: list[CheckJob] = []
    for img in images:
        if not img.is_file():
            problems.append(Problem("error", str(img), f"listed in {yaml_file} ({spec}) but does not exist",
                                    "add the image or remove it from the list", split=split))
            continue
        jobs.append(YoloJob(split, str(img), str(label_path_for(img)), yolo_class_ids(cfg), kpt_shape))
    wanted = {label_path_for(Path(j.path)) for j in jobs}  # type: ignore[attr-defined]
    for folder in folders:
        lbl_dir = label_path_for(folder / "x.jpg").parent
        if lbl_dir.is_dir():
            for f in sorted(lbl_dir.rglob("*.txt")):
                if f not in wanted:
                    problems.append(Problem("warning", str(f), "label file without an image; it is ignored",
                                            "add its image or delete it", split=split))
    return jobs, problems


def coco_split_jobs(annotation_file: Path, image_dir: str, root: Path, split: str,
                    keypoints: bool = False) -> SplitJobs:
    """Every image entry and annotation of a COCO file, each wrong one a problem (the rules of
    :func:`~visiontasks.data.detection.coco.read_coco`, which stops at the first, applied to all;
    with ``keypoints`` each annotation's keypoints too)."""
    from .coco import _categories, _load, annotation_keypoints, coco_keypoint_spec

    where = str(annotation_file)
    data, problems = collect(lambda: _load(annotation_file), where, split)
    cats = collect(lambda: _categories(data, where), where, split) if data is not None else (None, [])
    problems += cats[1]
    if data is None or cats[0] is None:
        return [], problems
    cat_to_label = {cid: i for i, cid in enumerate(cats[0][1])}
    num_keypoints = 0
    if keypoints:
        kspec, more = collect(lambda: coco_keypoint_spec(data, where), where, split)
        problems += more
        if kspec is None:
            return [], problems
        num_keypoints = kspec.num_keypoints
    image_root, more = collect(lambda: safe_join(root, image_dir, where), where, split)
    problems += more
    if image_root is None:
        return [], problems

    def bad(what: str, todo: str = "fix the entry in the JSON") -> None:
        problems.append(Problem("error", where, what, todo, split=split))

    entries: dict[int, dict[str, Any]] = {}
    for img in data["images"]:
        try:
            image_id, file_name = int(img["id"]), str(img["file_name"])
        except (KeyError, TypeError, ValueError):
            bad(f"image entry {json.dumps(img)[:80]} needs 'id' and 'file_name'")
            continue
        if image_id in entries:
            bad(f"image id {image_id} appears twice")
            continue
        try:
            path = safe_join(root, Path(image_root, file_name), f"{where} (image id {image_id})")
        except DatasetFormatError as err:
            bad(str(err).replace(f"{where} (image id {image_id}): ", f"image id {image_id}: "))
            continue
        size = (int(img["height"]), int(img["width"])) if img.get("height") and img.get("width") else None
        entries[image_id] = {"path": path, "size": size, "boxes": [], "labels": [], "where": []}
        if not path.is_file():
            bad(f"image id {image_id} names {path}, which does not exist", "add the image or remove its entry")
    for ann in data.get("annotations", []):
        ann_id = ann.get("id", "?")
        image_id = ann.get("image_id")
        if image_id not in entries:
            bad(f"annotation {ann_id} names image id {image_id}, which is not in 'images'")
            continue
        cat = ann.get("category_id")
        if cat not in cat_to_label:
            bad(f"annotation {ann_id} has category_id {cat}, not among the categories {sorted(cat_to_label)}")
            continue
        if ann.get("iscrowd", 0):
            continue
        bbox = ann.get("bbox")
        try:
            x, y, w, h = (float(v) for v in bbox)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            bad(f"annotation {ann_id} has bbox {bbox!r}, not [x, y, w, h]")
            continue
        e = entries[image_id]
        if keypoints:
            try:
                annotation_keypoints(ann, num_keypoints, e["size"], f"annotation {ann_id}")
            except DatasetFormatError as err:
                bad(str(err))
                continue
        e["boxes"].append([x, y, x + w, y + h])
        e["labels"].append(cat_to_label[cat])
        e["where"].append(f"{where}, annotation {ann_id}")
    jobs: list[CheckJob] = [
        BoxesJob(split, str(e["path"]), np.array(e["boxes"], np.float32).reshape(-1, 4),
                 np.array(e["labels"], np.int64), e["size"], e["where"], [None] * len(e["boxes"]))
        for e in entries.values() if e["path"].is_file()
    ]
    return jobs, problems


def input_scale(size: tuple[int, int], image_size: int | Sequence[int] | None, resize: str) -> tuple[float, float]:
    """``(sx, sy)``: how the datamodule's evaluation resize scales an image of ``size`` (H, W)
    (:meth:`~visiontasks.preprocessing.Preprocessing.scale`), so box sizes can be compared with a
    model's anchors in model-input pixels."""
    return _prep(image_size, resize).scale(size)


def _prep(image_size: int | Sequence[int] | None, resize: str) -> Preprocessing:
    return Preprocessing("none") if resize == "none" or image_size is None else Preprocessing(resize, pair(image_size))


def voc_split_jobs(root: Path, spec: str, split: str, class_names: list[str], keep_difficult: bool) -> SplitJobs:
    """Every XML file of a VOC split list: a wrong one is a problem (its first error) and the others
    are still read."""
    from .voc import VOC_CLASSES, read_voc_ids, read_voc_xml

    names = list(class_names or VOC_CLASSES)
    listed, problems = collect(lambda: read_voc_ids(root, spec), str(root), split, "fix data." + split)
    if listed is None:
        return [], problems
    list_file, ids = listed
    jobs: list[CheckJob] = []
    for n, image_id in enumerate(ids):
        try:
            rec = read_voc_xml(Path(root), list_file, image_id, n, names, keep_difficult)
        except DatasetFormatError as err:  # its message starts with the file it names
            file, _, what = str(err).partition(": ")
            problems.append(Problem("error", file, what, "fix the annotation", split=split))
            continue
        except UserInputError as err:  # an unreadable image whose size the XML does not give
            problems.append(Problem("error", str(Path(root) / "Annotations" / f"{image_id}.xml"), str(err),
                                    split=split))
            continue
        xml = str(Path(root) / "Annotations" / f"{image_id}.xml")
        jobs.append(BoxesJob(split, str(rec.path), rec.boxes, rec.labels, rec.size, [xml] * len(rec.boxes),
                             [None] * len(rec.boxes)))
    return jobs, problems


def input_canvas(size: tuple[int, int], image_size: int | Sequence[int] | None, resize: str) -> tuple[int, int]:
    """(H, W) of the model input an image of ``size`` becomes
    (:meth:`~visiontasks.preprocessing.Preprocessing.canvas`)."""
    return _prep(image_size, resize).canvas(size)