"""What every detection reader returns, and the checks they share (paths, boxes).

Boxes inside the package are float32 ``[K, 4]`` xyxy in pixels with pixel *edges* as coordinates: a
box covering columns 3..7 of an image is ``x1=3, x2=8``. Labels are int64, 0 = the first real class;
there is no background index in the data (each model adds its own background internally).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visiontasks.errors import InvalidInputError


class DatasetFormatError(InvalidInputError):
    """A dataset file that breaks its format's rules (the message names the file, and line/entry)."""


@dataclass
class DetectionRecord:
    """One image of a split: its file, id, ground truth in file pixels, and (H, W) when known."""

    path: Path
    image_id: int
    boxes: np.ndarray  # float32 [K, 4] xyxy pixels of the file
    labels: np.ndarray  # int64 [K], 0-based
    size: tuple[int, int] | None = None  # (H, W) of the file
    # one COCO segmentation per box (polygons in file pixels or RLE; see masks.py), when read with masks
    masks: list[Any] | None = None
    # float32 [K, P, 3] (x, y, v) in file pixels, one row per box, when read with keypoints (keypoints.py)
    keypoints: np.ndarray | None = None


@dataclass
class DetectionSplit:
    """The records of one split, the class names (index = label) and per-class dataset ids.

    ``category_ids[label]`` is the id the dataset uses for that class (COCO category id; the label
    itself for VOC and YOLO): predictions are written with these ids.
    ``dropped_boxes`` counts degenerate boxes removed while reading.
    """

    name: str
    records: list[DetectionRecord]
    class_names: list[str]
    category_ids: list[int]
    dropped_boxes: int = 0
    notes: list[str] = field(default_factory=list)
    first_dropped: str | None = None  # where the first dropped box was (for the warning)

    @property
    def num_boxes(self) -> int:
        return int(sum(len(r.labels) for r in self.records))

    def add(self, record: DetectionRecord, where: str) -> None:
        """Append ``record`` after :func:`clean_boxes` (clip to its size, drop degenerate boxes),
        counting what was dropped; ``where`` names the annotation (file, entry) for the warning."""
        keep = np.flatnonzero(_valid_boxes(np.asarray(record.boxes, np.float32).reshape(-1, 4), record.size))
        if record.masks is not None:  # the masks and keypoints of dropped boxes go with them
            record.masks = [record.masks[i] for i in keep]
        if record.keypoints is not None:
            record.keypoints = record.keypoints[keep]
        record.boxes, record.labels, dropped = clean_boxes(record.boxes, record.labels, record.size)
        if dropped and self.first_dropped is None:
            self.first_dropped = where
        self.dropped_boxes += dropped
        self.records.append(record)

    def warn_dropped(self) -> None:
        """One warning with the count of degenerate boxes dropped while reading (if any)."""
        warn_dropped(self, self.first_dropped, stacklevel=4)


def safe_join(root: str | Path, rel: str | Path, where: str) -> Path:
    """``root / rel``, refusing results outside ``root`` (``../`` or an absolute path elsewhere).

    The check is lexical (``normpath``): folders the user links into the root on purpose stay
    usable, while an annotation cannot name a file outside the dataset. ``where`` names the
    annotation file (and entry) for the error message.
    """
    root_n = os.path.normpath(os.path.abspath(root))
    joined = os.path.normpath(os.path.join(root_n, str(rel)))
    if joined != root_n and os.path.commonpath([joined, root_n]) != root_n:
        raise DatasetFormatError(
            f"{where}: path {str(rel)!r} points outside the dataset root {root_n}; refused"
        )
    return Path(joined)


def clean_boxes(
    boxes: np.ndarray, labels: np.ndarray, size: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Clip ``boxes`` (xyxy px) to the image ``size`` (H, W) when known and drop degenerate ones
    (``x2 <= x1`` or ``y2 <= y1``, i.e. zero area, before or after clipping, or non-finite).

    Returns ``(boxes float32 [K', 4], labels int64 [K'], number dropped)``.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    valid = _valid_boxes(boxes, size)
    if size is not None:
        h, w = size
        boxes = boxes.copy()
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
    return boxes[valid], labels[valid], int((~valid).sum())


def _valid_boxes(boxes: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """bool ``[K]``: finite, positive area, and still so after clipping to ``size`` (H, W) when known."""
    valid = np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    if size is not None:
        h, w = size
        x, y = boxes[:, 0::2].clip(0, w), boxes[:, 1::2].clip(0, h)
        valid &= (x[:, 1] > x[:, 0]) & (y[:, 1] > y[:, 0])
    return valid


def warn_dropped(split: DetectionSplit, example: str | None, stacklevel: int = 3) -> None:
    """One warning per split with the count of degenerate boxes dropped while reading."""
    if split.dropped_boxes:
        hint = f" (first in {example})" if example else ""
        warnings.warn(
            f"{split.name}: dropped {split.dropped_boxes} degenerate box(es) with x2 <= x1, "
            f"y2 <= y1 or zero area after clipping to the image{hint}",
            stacklevel=stacklevel,
        )


def image_size_of(path: Path) -> tuple[int, int]:
    """(H, W) from the file header (no full decode), EXIF orientation applied like ``read_image``."""
    from visiontasks.data.io import image_size

    w, h = image_size(path)
    return int(h), int(w)


def check_stored_size(path: Path, stored: tuple[int, int], where: str) -> tuple[int, int]:
    """``stored`` (H, W), the size an annotation file records for image ``path`` (COCO ``height/width``,
    VOC ``<size>``), checked against the image as ``read_image`` gives it (EXIF orientation applied).

    Labelling tools differ: some show a phone picture turned upright by its EXIF orientation, some
    show the pixels as stored. When the recorded size is the *stored* (unturned) one of a file that
    EXIF turns by 90 degrees, the boxes were drawn on the sideways image and would not fit the
    upright one: a :class:`DatasetFormatError` says so. Any other recorded size is returned as is.
    """
    from visiontasks.data.io import image_size_and_orientation

    (w, h), orientation = image_size_and_orientation(path)
    if orientation in (5, 6, 7, 8) and h != w and tuple(stored) == (w, h):
        raise DatasetFormatError(
            f"{where}: records {path.name} as {stored[1]}x{stored[0]} (WxH), its size as stored, but the file's "
            f"EXIF orientation {orientation} turns it to {w}x{h}, as it is read and as most labelling tools show "
            "it; the annotations were made on the unturned image. Re-export them from a tool that applies EXIF "
            "orientation, or write the images upright without the EXIF tag (e.g. PIL ImageOps.exif_transpose "
            "and save)"
        )
    return stored
