"""Pascal VOC XML detection annotations with ``ImageSets/Main/<split>.txt`` lists.

Layout under the root (a ``VOCdevkit/VOC2007`` folder): ``Annotations/<id>.xml``,
``JPEGImages/<filename>``, ``ImageSets/Main/<split>.txt`` (one id per line). VOC pixel
coordinates are 1-based and inclusive; they are converted to pixel edges (``x1 = xmin - 1``,
``x2 = xmax``). Objects marked ``difficult`` are skipped unless ``keep_difficult``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from visiontasks.errors import MissingFileError

from ..missing import raise_if_missing, read_list_lines
from .common import (
    DatasetFormatError, DetectionRecord, DetectionSplit, check_stored_size, image_size_of, safe_join,
)
from .reader import DetectionReader, register_reader

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]


def _text(node: ET.Element, tag: str, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        raise DatasetFormatError(f"{where}: missing <{tag}>")
    return child.text.strip()


def split_list_path(root: str | Path, split: str) -> Path:
    """``ImageSets/Main/<split>.txt``, or ``split`` itself when it names a .txt file in the root."""
    rel = split if split.endswith(".txt") else f"ImageSets/Main/{split}.txt"
    return safe_join(root, rel, f"VOC split {split!r}")


def read_voc(
    root: str | Path,
    split: str,
    class_names: list[str] | None = None,
    keep_difficult: bool = False,
    name: str | None = None,
) -> DetectionSplit:
    """Read the images listed in ``ImageSets/Main/<split>.txt`` and their XML files."""
    root = Path(root)
    class_names = list(class_names or VOC_CLASSES)
    list_file = split_list_path(root, split)
    lines = _read_id_lines(list_file)
    xmls = [(n, safe_join(root, f"Annotations/{i}.xml", f"{list_file}, line {n}")) for n, i in lines]
    raise_if_missing(str(list_file), [f"line {n}: id {x.stem!r} has no annotation file {x}" for n, x in xmls
                                      if not x.is_file()], len(xmls), "annotation files",
                     "add them or remove their ids from the list", DatasetFormatError)
    split_ = DetectionSplit(name or f"VOC {split}", [], class_names, list(range(len(class_names))))
    missing: list[str] = []  # images the XML files name that do not exist, reported together
    for n, (_, image_id) in enumerate(lines):
        record = read_voc_xml(root, list_file, image_id, n, class_names, keep_difficult, missing)
        if record is not None:
            split_.add(record, str(safe_join(root, f"Annotations/{image_id}.xml", str(list_file))))
    raise_if_missing(str(list_file), missing, len(lines), hint="add the images or fix <filename> in those XML files",
                     error=DatasetFormatError)
    split_.warn_dropped()
    return split_


def _read_id_lines(list_file: Path) -> list[tuple[int, str]]:
    """``(line number, id)`` of a VOC split list; a missing list is an error naming it."""
    if not list_file.is_file():
        raise MissingFileError(f"VOC split list {list_file} does not exist")
    return read_list_lines(list_file)


def read_voc_ids(root: str | Path, split: str) -> tuple[Path, list[str]]:
    """``(the list file, the ids it lists)`` of ``ImageSets/Main/<split>.txt`` (or a .txt in the root)."""
    list_file = split_list_path(root, split)
    return list_file, [image_id for _, image_id in _read_id_lines(list_file)]


def read_voc_xml(
    root: Path, list_file: Path, image_id: str, n: int, class_names: list[str], keep_difficult: bool,
    missing: list[str] | None = None,
) -> DetectionRecord | None:
    """The record of ``Annotations/<image_id>.xml`` (boxes as annotated, not yet clipped), ``n`` its
    index in the split; a wrong file raises :class:`DatasetFormatError` naming it. With ``missing``,
    an image that does not exist is added to it (the caller reports them all) and None returned."""
    index = {c: i for i, c in enumerate(class_names)}
    xml_path = safe_join(root, f"Annotations/{image_id}.xml", f"{list_file} (id {image_id!r})")
    if not xml_path.is_file():
        raise DatasetFormatError(f"{list_file}: id {image_id!r} has no annotation file {xml_path}")
    where = str(xml_path)
    try:
        tree = ET.parse(xml_path).getroot()
    except ET.ParseError as err:
        raise DatasetFormatError(f"{where}: not valid XML ({err})") from None
    fname_node = tree.find("filename")
    fname = fname_node.text.strip() if fname_node is not None and fname_node.text else f"{image_id}.jpg"
    img_path = safe_join(root, Path("JPEGImages") / fname, where)
    if not img_path.is_file():
        if missing is None:
            raise DatasetFormatError(f"{where}: names image {img_path}, which does not exist")
        missing.append(f"{where}: names image {img_path}")
        return None
    size = None
    size_node = tree.find("size")
    if size_node is not None:
        try:
            h, w = int(float(_text(size_node, "height", where))), int(float(_text(size_node, "width", where)))
            size = (h, w) if h > 0 and w > 0 else None
        except (DatasetFormatError, ValueError):
            size = None
    if size is None:
        size = image_size_of(img_path)
    else:
        size = check_stored_size(img_path, size, where)
    boxes, labels = [], []
    for obj in tree.findall("object"):
        cls = _text(obj, "name", where)
        if cls not in index:
            raise DatasetFormatError(
                f"{where}: object class {cls!r} is not in the class list "
                f"({', '.join(class_names[:8])}{', ...' if len(class_names) > 8 else ''})"
            )
        difficult = obj.find("difficult")
        if not keep_difficult and difficult is not None and (difficult.text or "0").strip() == "1":
            continue
        bb = obj.find("bndbox")
        if bb is None:
            raise DatasetFormatError(f"{where}: object {cls!r} has no <bndbox>")
        try:
            x1, y1, x2, y2 = (float(_text(bb, t, where)) for t in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError as err:
            raise DatasetFormatError(f"{where}: object {cls!r}: bad coordinate ({err})") from None
        boxes.append([x1 - 1, y1 - 1, x2, y2])
        labels.append(index[cls])
    return DetectionRecord(img_path, n, np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64), size)


def write_voc_xml(path: str | Path, rec: DetectionRecord, class_names: list[str]) -> None:
    """Write one record as a VOC XML file (1-based inclusive integer coordinates)."""
    if rec.size is None:
        raise ValueError(f"record {rec.path} needs its size to be written as VOC")
    h, w = rec.size
    ann = ET.Element("annotation")
    ET.SubElement(ann, "folder").text = "JPEGImages"
    ET.SubElement(ann, "filename").text = Path(rec.path).name
    size = ET.SubElement(ann, "size")
    for tag, v in (("width", w), ("height", h), ("depth", 3)):
        ET.SubElement(size, tag).text = str(v)
    for box, label in zip(rec.boxes.tolist(), rec.labels.tolist()):
        obj = ET.SubElement(ann, "object")
        ET.SubElement(obj, "name").text = class_names[label]
        ET.SubElement(obj, "difficult").text = "0"
        bb = ET.SubElement(obj, "bndbox")
        x1, y1, x2, y2 = box
        for tag, v in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bb, tag).text = str(int(round(v)))
    ET.indent(ann)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(ann).write(path, encoding="utf-8")


@register_reader("voc")
class VocReader(DetectionReader):
    """Pascal VOC XML. A split spec is an ``ImageSets/Main`` list name (``trainval``) or a ``.txt``
    path in the root. The class list comes from the config (default: the 20 VOC classes)."""

    def class_table(self) -> tuple[list[str], list[int]]:
        names = self.given_names or list(VOC_CLASSES)
        return names, list(range(len(names)))

    def samples(self, spec: Any, name: str, class_names: list[str]) -> DetectionSplit:
        return read_voc(self.root, str(spec), class_names, self.keep_difficult, name=name)

    def check_split(self, spec: Any, split: str, class_names: list[str]) -> tuple[list[Any], list[Any]]:
        from .check import voc_split_jobs  # every XML file

        return voc_split_jobs(self.root, str(spec), split, class_names, self.keep_difficult)

    @staticmethod
    def image_file(split: str, index: int) -> str:
        return f"JPEGImages/{split}_{index:06d}.png"

    @classmethod
    def write(cls, root: Path, splits: dict[str, list[DetectionRecord]], class_names: list[str],
              keypoint_spec: Any = None) -> None:
        sets = root / "ImageSets" / "Main"
        sets.mkdir(parents=True, exist_ok=True)
        for split, records in splits.items():
            for rec in records:
                write_voc_xml(root / "Annotations" / f"{rec.path.stem}.xml", rec, class_names)
            (sets / f"{split}.txt").write_text("\n".join(r.path.stem for r in records) + "\n")
