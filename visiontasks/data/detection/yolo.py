"""YOLO txt labels with their dataset YAML (Ultralytics layout).

The YAML gives ``path`` (dataset root; relative to the YAML's folder, default that folder), ``train``
/ ``val`` / ``test`` (a folder of images, a ``.txt`` file listing images, or a list of those, relative
to ``path``) and ``names`` (a list, or a mapping ``index: name``). Each image ``.../images/.../x.jpg``
has its labels in ``.../labels/.../x.txt``: one object per line, ``class cx cy w h`` normalised to
[0, 1] (a polygon ``class x1 y1 x2 y2 ...`` is reduced to its box; with ``masks=True`` every line
must be such a polygon of at least 3 points, kept as the object's instance mask).
``names`` as a mapping may skip ids (COCO's 1..90 in Ultralytics' segmentation YAMLs): label ``k`` is
then the k-th id, and the ids are the dataset's category ids (written in predictions).

Pose labels (``keypoints=True``; the YAML's ``kpt_shape: [P, 3]`` or ``[P, 2]``, as Ultralytics writes
it): each line is ``class cx cy w h`` then ``P`` points ``x y v`` (or ``x y``, then every point counts as
visible, as Ultralytics' loss counts them), normalised like the box; ``flip_idx`` (Ultralytics) pairs
the mirror points; ``kpt_names`` (a list, or Ultralytics' mapping ``class: [names]``) names them
(default ``"0".."P-1"``); not Ultralytics' but accepted: ``skeleton`` (0-based pairs) and
``kpt_sigmas`` (OKS).

As the format defines it, the images make the dataset: an image without a label file, or with an
empty one, is a background image; a label file without an image is ignored (counted in a warning).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from visiontasks.data.io import IMAGE_EXTENSIONS, list_image_files
from visiontasks.errors import MissingFileError

from ..missing import raise_if_missing
from .common import DatasetFormatError, DetectionRecord, DetectionSplit, image_size_of, safe_join
from .keypoints import (KeypointSpec, check_flip_idx, check_sigmas, check_skeleton, clean_points,
                        flip_idx_from_names, points_problem)
from .reader import DetectionReader, register_reader


def find_yaml(root: str | Path) -> Path:
    """``root`` itself when it is a YAML file, else ``root/data.yaml`` or the only YAML in ``root``."""
    root = Path(root)
    if root.is_file():
        return root
    if not root.is_dir():
        raise MissingFileError(f"YOLO dataset {root} does not exist")
    if (root / "data.yaml").is_file():
        return root / "data.yaml"
    found = sorted([*root.glob("*.yaml"), *root.glob("*.yml")])
    if len(found) != 1:
        raise MissingFileError(
            f"YOLO dataset {root}: expected data.yaml or exactly one .yaml file, found "
            f"{[f.name for f in found]}; set root to the YAML file"
        )
    return found[0]


def load_yolo_yaml(yaml_path: str | Path) -> tuple[dict[str, Any], Path, list[str]]:
    """``(the YAML dict, the dataset root, class names)``."""
    yaml_path = find_yaml(yaml_path)
    try:
        cfg = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise DatasetFormatError(f"{yaml_path}: not valid YAML ({err})") from None
    if not isinstance(cfg, dict) or "names" not in cfg:
        raise DatasetFormatError(f"{yaml_path}: a YOLO dataset YAML needs 'names' (and train/val)")
    names = cfg["names"]
    if isinstance(names, dict):
        try:
            keys = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise DatasetFormatError(f"{yaml_path}: 'names' keys must be integer class ids") from None
        if len(set(keys)) != len(keys) or (keys and keys[0] < 0):
            raise DatasetFormatError(f"{yaml_path}: 'names' keys must be distinct ids >= 0, got {keys}")
        names = [str(names[k] if k in names else names[str(k)]) for k in keys]
    elif isinstance(names, list):
        names = [str(n) for n in names]
    else:
        raise DatasetFormatError(f"{yaml_path}: 'names' must be a list or a mapping index: name")
    if "nc" in cfg and int(cfg["nc"]) != len(names):
        raise DatasetFormatError(f"{yaml_path}: nc={cfg['nc']} but {len(names)} names")
    base = Path(cfg.get("path") or ".")
    root = base if base.is_absolute() else yaml_path.parent / base
    return cfg, Path(os.path.normpath(root.absolute())), names


def label_path_for(image: Path) -> Path:
    """Ultralytics' rule: the last ``/images/`` folder becomes ``/labels/``, the suffix ``.txt``."""
    s = str(image)
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if sa in s:
        s = sb.join(s.rsplit(sa, 1))
    return Path(s).with_suffix(".txt")


def _list_images(root: Path, entry: str, where: str, report_missing: bool = False) -> tuple[list[Path], list[Path]]:
    """Images named by one split entry, and the image folders it covers (for orphan labels);
    ``report_missing``: the images a .txt list names that do not exist raise one error naming them all
    (``visiontasks check`` lists them itself, one problem each)."""
    p = safe_join(root, entry, where)
    if p.is_dir():
        return list_image_files(p, recursive=True), [p]
    if p.is_file() and p.suffix == ".txt":
        files, missing = [], []
        for n, line in enumerate(p.read_text().splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            base = p.parent if line.startswith("./") else root
            files.append(safe_join(root, base / line, f"{p}, line {n}"))
            if report_missing and not files[-1].is_file():
                missing.append(f"line {n}: {files[-1]}")
        raise_if_missing(f"{where}: {p}", missing, len(files), hint="restore the images or remove their lines",
                         error=DatasetFormatError)
        return files, []
    raise MissingFileError(f"{where}: split entry {entry!r} -> {p} is neither a folder nor a .txt list")


def _bad_normalised(coords: list[float]) -> str:
    """What is wrong with YOLO's normalised coordinates (``""`` when nothing): NaN/inf, negative, or
    above 1 (beyond float rounding)."""
    arr = np.asarray(coords, np.float64)
    if not np.isfinite(arr).all():
        return "NaN or infinite coordinate"
    if (arr < -1e-6).any():
        return f"negative coordinate {arr.min():g}"
    if (arr > 1 + 1e-6).any():
        return f"coordinate {arr.max():g} > 1"
    return ""


_FRACTIONS_HINT = ("; YOLO coordinates are fractions of the image width/height in [0, 1]: fix the label "
                   "(pixel values must be divided by the image size)")
_SKIP_HINT = "; or set skip_bad_labels: true in the data config to skip such lines (counted in a warning)"


def yolo_class_ids(cfg: dict[str, Any]) -> list[int]:
    """The class id of each label (the YAML's ``names`` keys, sorted; ``0..n-1`` for a list)."""
    names = cfg["names"]
    return sorted(int(k) for k in names) if isinstance(names, dict) else list(range(len(names)))


KptShape = tuple[int, int]  # (P, 2 or 3) of the YAML's kpt_shape


def yolo_kpt_shape(cfg: dict[str, Any], where: str) -> KptShape:
    """``(P, dims)`` from the YAML's ``kpt_shape``; a missing or malformed one is an error."""
    shape = cfg.get("kpt_shape")
    if shape is None:
        raise DatasetFormatError(f"{where}: keypoints: true needs kpt_shape: [P, 3] (or [P, 2]) in the dataset YAML "
                                 "(Ultralytics' pose layout), or set keypoints: false")
    try:
        p, dims = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise DatasetFormatError(f"{where}: kpt_shape must be [P, 2] or [P, 3], got {shape!r}") from None
    if p < 1 or dims not in (2, 3):
        raise DatasetFormatError(f"{where}: kpt_shape must be [P, 2] or [P, 3] with P >= 1, got {list(shape)}")
    return p, dims


def yolo_keypoint_spec(yaml_path: str | Path) -> KeypointSpec:
    """The keypoint declaration of a YOLO pose YAML (``kpt_shape``, ``flip_idx``, ``kpt_names``,
    ``skeleton``, ``kpt_sigmas``)."""
    yaml_file = find_yaml(yaml_path)
    cfg, _, _ = load_yolo_yaml(yaml_file)
    where = str(yaml_file)
    p, _ = yolo_kpt_shape(cfg, where)
    names = cfg.get("kpt_names")
    if isinstance(names, dict):  # Ultralytics: class -> names; the points are the same for every object
        lists = [list(v) for v in names.values()]
        if any(lst != lists[0] for lst in lists):
            raise DatasetFormatError(
                f"{where}: kpt_names differ between classes; every object must have the same points")
        names = lists[0] if lists else None
    names = [str(n) for n in names] if names else [str(i) for i in range(p)]
    if len(names) != p:
        raise DatasetFormatError(f"{where}: kpt_names has {len(names)} names but kpt_shape says {p} points")
    flip = cfg.get("flip_idx")
    flip_idx = check_flip_idx(flip, p, where) if flip is not None else flip_idx_from_names(names)
    return KeypointSpec(names, check_skeleton(cfg.get("skeleton"), p, where), flip_idx,
                        check_sigmas(cfg.get("kpt_sigmas"), p, where), where)


def _line_problem(parts: list[str], class_ids: list[int], masks: bool, kpt_shape: KptShape | None = None) -> str:
    """What is wrong with one label line split into fields (``""`` when nothing)."""
    try:
        values = [float(v) for v in parts]
    except ValueError:
        return "non-numeric value"
    cls, num_classes = values[0], len(class_ids)
    if not np.isfinite(cls) or cls != int(cls) or int(cls) not in class_ids:
        contiguous = class_ids == list(range(num_classes))
        return (f"class id {parts[0]} is outside the {num_classes} classes "
                + (f"(0..{num_classes - 1})" if contiguous else "(the 'names' ids)") + " of the dataset YAML")
    coords = values[1:]
    if kpt_shape is not None:
        p, dims = kpt_shape
        if len(parts) != 5 + p * dims:
            return (f"kpt_shape [{p}, {dims}] of the dataset YAML needs 5 + {p} x {dims} = {5 + p * dims} values "
                    f"('class cx cy w h' then {p} points), got {len(parts)}")
        bad = _bad_normalised(coords[:4])
        return bad or points_problem(_points(coords[4:], kpt_shape), (1, 1), 1e-6).replace(
            "outside the 1x1 image (tolerance 1e-06)", "outside the image (normalised x, y must be in [0, 1])")
    if not (len(coords) == 4 or (len(coords) >= 6 and len(coords) % 2 == 0)):
        return f"expected 'class cx cy w h' (or a polygon), got {len(parts)} values"
    bad = _bad_normalised(coords)
    if bad:
        return bad
    if masks and len(coords) < 6:
        return ("an instance mask needs a polygon 'class x1 y1 x2 y2 x3 y3 ...' of at least 3 points, got "
                f"{len(coords)} coordinate(s)")
    return ""


def _points(values: list[float], kpt_shape: KptShape) -> np.ndarray:
    """float64 ``[P, 3]`` of a line's point values (``x y`` only: ``v = 2``, every point labelled)."""
    p, dims = kpt_shape
    arr = np.asarray(values, np.float64).reshape(p, dims)
    return arr if dims == 3 else np.concatenate([arr, np.full((p, 1), 2.0)], axis=1)


Parsed = tuple[list[float], int, "list[list[float]] | None", "np.ndarray | None"]


def parse_label_line(line: str, n: int, path: Path, class_ids: list[int], size: tuple[int, int],
                     masks: bool = False, kpt_shape: KptShape | None = None) -> Parsed | None:
    """Line ``n`` of label file ``path`` as ``(box xyxy in pixels of an image of size (H, W), label,
    polygon in file pixels (with ``masks``) or None, keypoints float32 [P, 3] in file pixels (with
    ``kpt_shape``) or None)``; ``None`` for a blank line. A wrong line raises
    :class:`DatasetFormatError` naming file and line."""
    parts = line.split()
    if not parts:
        return None
    problem = _line_problem(parts, class_ids, masks, kpt_shape)
    if problem:
        fix = _FRACTIONS_HINT if "coordinate" in problem and "polygon" not in problem else ""
        raise DatasetFormatError(f"{path}, line {n}: {problem} in {line.strip()!r}{fix}{_SKIP_HINT}")
    h, w = size
    values = [float(v) for v in parts]
    coords = values[1:]
    points = None
    if kpt_shape is not None:
        points = clean_points(_points(coords[4:], kpt_shape) * np.array([w, h, 1.0]))
        coords = coords[:4]
    if len(coords) == 4:
        cx, cy, bw, bh = coords
        box = [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h]
    else:  # polygon -> its box
        xs, ys = np.array(coords[0::2]) * w, np.array(coords[1::2]) * h
        box = [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]
    polygon = [[float(v * (w if i % 2 == 0 else h)) for i, v in enumerate(coords)]] if masks else None
    return box, class_ids.index(int(values[0])), polygon, points


def _parse_label_file(
    path: Path, class_ids: list[int], size: tuple[int, int], masks: bool = False, skipped: list[str] | None = None,
    kpt_shape: KptShape | None = None,
) -> tuple[np.ndarray, np.ndarray, list[Any] | None, np.ndarray | None]:
    """Boxes (xyxy px), labels, (with ``masks``) polygons and (with ``kpt_shape``) keypoints [K, P, 3]
    of one label file. A bad line raises a :class:`DatasetFormatError` naming the file and line; with
    ``skipped`` (a list) it is left out and described there instead."""
    boxes, labels, polygons, points = [], [], [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            parsed = parse_label_line(line, n, path, class_ids, size, masks, kpt_shape)
        except DatasetFormatError as err:
            if skipped is None:
                raise
            skipped.append(str(err).split("; ")[0])
            continue
        if parsed is not None:
            boxes.append(parsed[0])
            labels.append(parsed[1])
            polygons.append(parsed[2])
            points.append(parsed[3])
    kpts = np.array(points, np.float32).reshape(-1, kpt_shape[0], 3) if kpt_shape is not None else None
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64), polygons if masks else None, kpts


def read_yolo(yaml_path: str | Path, split: str, name: str | None = None, masks: bool = False,
              skip_bad_labels: bool = False, keypoints: bool = False) -> DetectionSplit:
    """Read split ``split`` (a key of the YAML: ``train``, ``val``, ``test``); ``masks``: polygon
    lines become the records' instance masks; ``keypoints``: pose lines (the YAML's ``kpt_shape``)
    give the records' keypoints. A bad label line (non-numeric, unknown class id, wrong
    number of values, coordinates NaN/negative/above 1) is an error naming the file and line; with
    ``skip_bad_labels`` such lines are left out and counted in one warning."""
    yaml_file = find_yaml(yaml_path)
    cfg, root, names = load_yolo_yaml(yaml_file)
    # a pose data set read without keypoints still has pose lines: their boxes are read, the points not
    if keypoints:
        yolo_keypoint_spec(yaml_file)  # flip_idx, kpt_names, skeleton checked with kpt_shape
    kpt_shape = yolo_kpt_shape(cfg, str(yaml_file)) if keypoints or "kpt_shape" in cfg else None
    if masks and kpt_shape is not None:
        raise DatasetFormatError(f"{yaml_file}: pose labels (kpt_shape) are not polygons; masks: true needs "
                                 "YOLO segmentation labels")
    if not cfg.get(split):
        raise DatasetFormatError(f"{yaml_file}: no {split!r} entry (keys: {sorted(cfg)})")
    entries = cfg[split] if isinstance(cfg[split], list) else [cfg[split]]
    images: list[Path] = []
    folders: list[Path] = []
    for entry in entries:
        files, dirs = _list_images(root, str(entry), f"{yaml_file} ({split})", report_missing=True)
        images += files
        folders += dirs
    if not images:
        looked = ", ".join(str(safe_join(root, str(e), str(yaml_file))) for e in entries)
        raise DatasetFormatError(f"{yaml_file} ({split}): no images in {looked} (extensions: "
                                 f"{', '.join(IMAGE_EXTENSIONS)}); check the {split!r} entry")
    class_ids = yolo_class_ids(cfg)
    out = DetectionSplit(name or f"YOLO {split}", [], names, class_ids)
    skipped: list[str] | None = [] if skip_bad_labels else None
    for i, img in enumerate(images):  # every listed image exists (checked by _list_images)
        size = image_size_of(img)
        lbl = label_path_for(img)
        polygons: list[Any] | None = [] if masks else None
        points = np.zeros((0, kpt_shape[0], 3), np.float32) if kpt_shape is not None else None
        if lbl.is_file():
            boxes, labels, polygons, points = _parse_label_file(lbl, class_ids, size, masks, skipped, kpt_shape)
        else:  # no label file: a background image, as the format defines it
            boxes, labels = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        out.add(DetectionRecord(img, i, boxes, labels, size, polygons, points if keypoints else None), str(lbl))
    # label files whose image is missing are ignored by the format; say how many there are
    wanted = {label_path_for(r.path) for r in out.records}
    orphans = []
    for folder in folders:
        lbl_dir = label_path_for(folder / "x.jpg").parent
        if lbl_dir.is_dir():
            orphans += [f for f in lbl_dir.rglob("*.txt") if f not in wanted]
    if skipped:
        msg = f"{out.name}: skipped {len(skipped)} bad label line(s) (skip_bad_labels); first: {skipped[0]}"
        out.notes.append(msg)
        warnings.warn(msg, stacklevel=2)
    if orphans:
        msg = (f"{out.name}: {len(orphans)} label file(s) have no image and are ignored "
               f"(e.g. {orphans[0]})")
        out.notes.append(msg)
        warnings.warn(msg, stacklevel=2)
    out.warn_dropped()
    return out


def write_yolo_labels(path: str | Path, rec: DetectionRecord, keypoints: bool = False) -> None:
    """Write one record's boxes as a YOLO label file (normalised ``class cx cy w h``); with
    ``keypoints`` each line goes on with the record's points as normalised ``x y v``."""
    if rec.size is None:
        raise ValueError(f"record {rec.path} needs its size to be written as YOLO")
    h, w = rec.size
    lines = []
    for k, ((x1, y1, x2, y2), label) in enumerate(zip(rec.boxes.tolist(), rec.labels.tolist())):
        line = f"{label} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
        if keypoints and rec.keypoints is not None:
            line += "".join(f" {x / w:.6f} {y / h:.6f} {int(v)}" for x, y, v in rec.keypoints[k].tolist())
        lines.append(line)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + ("\n" if lines else ""))


@register_reader("yolo")
class YoloReader(DetectionReader):
    """YOLO txt labels with their dataset YAML (``root``: the YAML or its folder). A split spec is a
    key of the YAML (``train``, ``val``, ``test``); the class table is the YAML's ``names``."""

    has_masks = True
    has_keypoints = True

    @property
    def data_root(self) -> Path:
        return load_yolo_yaml(self.root)[1]

    def keypoint_spec(self) -> KeypointSpec:
        return yolo_keypoint_spec(self.root)

    def class_table(self) -> tuple[list[str], list[int]]:
        cfg, _, names = load_yolo_yaml(self.root)
        return names, yolo_class_ids(cfg)

    def samples(self, spec: Any, name: str, class_names: list[str]) -> DetectionSplit:
        return read_yolo(self.root, str(spec), name=name, masks=self.masks, skip_bad_labels=self.skip_bad_labels,
                         keypoints=self.keypoints)

    def check_split(self, spec: Any, split: str, class_names: list[str]) -> tuple[list[Any], list[Any]]:
        from .check import yolo_split_jobs  # every image, every label line

        return yolo_split_jobs(self.root, spec, split, keypoints=self.keypoints)

    @classmethod
    def write(cls, root: Path, splits: dict[str, list[DetectionRecord]], class_names: list[str],
              keypoint_spec: KeypointSpec | None = None) -> None:
        for split, records in splits.items():
            for rec in records:
                write_yolo_labels(root / "labels" / split / f"{rec.path.stem}.txt", rec, keypoint_spec is not None)
        data: dict[str, Any] = {"path": ".", **{s: f"images/{s}" for s in splits},
                                "names": dict(enumerate(class_names))}
        if keypoint_spec is not None:  # Ultralytics' keys, then the accepted extras
            data["kpt_shape"] = [keypoint_spec.num_keypoints, 3]
            if keypoint_spec.flip_idx is not None:
                data["flip_idx"] = list(keypoint_spec.flip_idx)
            data.update(kpt_names=list(keypoint_spec.names), skeleton=[list(e) for e in keypoint_spec.skeleton])
            if keypoint_spec.sigmas is not None:
                data["kpt_sigmas"] = list(keypoint_spec.sigmas)
        (root / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
