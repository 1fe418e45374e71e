"""The interface of a detection format's reader, and the registry the datamodule looks formats up in.

A format is one class (e.g. in ``coco.py``) decorated with ``@register_reader("name")``: it knows its
class table (read cheaply, without the annotations), reads the records of a split, and writes
records in its layout (used by the synthetic writer, so that the same reader runs on generated data).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from visiontasks.data.registry import Registry

from .common import DetectionRecord, DetectionSplit
from .keypoints import KeypointSpec

DETECTION_READERS: Registry["DetectionReader"] = Registry("detection format")
register_reader = DETECTION_READERS.register


class DetectionReader(ABC):
    """Reads one detection format under ``root``.

    Args:
        root: the dataset root (for YOLO the dataset YAML or its folder).
        splits: ``stage -> split spec`` as the datamodule was given them (``train``, ``val``, ...); the
            class table may come from the first of them (COCO).
        class_names: the names the user gave (VOC: the class list; others: checked by the datamodule).
        keep_difficult: keep objects marked difficult (VOC).
        skip_bad_labels: leave out bad annotation lines with one counted warning instead of an error
            (YOLO).
        masks: also read each object's instance mask (records then carry ``masks``); a format without
            instance masks refuses it.
        keypoints: also read each object's keypoints (records then carry ``keypoints`` [K, P, 3]; the
            reader's :meth:`keypoint_spec` says what they are); a format without them refuses it.
    """

    has_masks = False  # whether the format can carry instance masks (``masks=True``)
    has_keypoints = False  # whether the format can carry keypoints (``keypoints=True``)

    name: str  # set by register_reader

    def __init__(
        self,
        root: str | Path,
        splits: dict[str, Any] | None = None,
        class_names: list[str] | None = None,
        keep_difficult: bool = False,
        skip_bad_labels: bool = False,
        masks: bool = False,
        keypoints: bool = False,
    ) -> None:
        from visiontasks.errors import InvalidInputError

        if masks and not self.has_masks:
            raise InvalidInputError(
                f"format {getattr(self, 'name', type(self).__name__)!r} has no instance masks here; use "
                "coco (polygons or RLE) or yolo (polygon labels) with masks: true"
            )
        if keypoints and not self.has_keypoints:
            raise InvalidInputError(
                f"format {getattr(self, 'name', type(self).__name__)!r} has no keypoints here; use coco "
                "(person-keypoints JSON) or yolo (pose labels with kpt_shape) with keypoints: true"
            )
        self.masks = masks
        self.keypoints = keypoints
        self.root = Path(root)
        self.splits = dict(splits or {})
        self.given_names = list(class_names) if class_names else None
        self.keep_difficult = keep_difficult
        self.skip_bad_labels = skip_bad_labels

    @property
    def data_root(self) -> Path:
        """The folder the data lives in (where proposal caches go by default)."""
        return self.root

    @abstractmethod
    def class_table(self) -> tuple[list[str], list[int]]:
        """``(class names, dataset id per class)`` from the class table only (no annotations read)."""

    def keypoint_spec(self) -> KeypointSpec:
        """What the data set declares about its keypoints (names, skeleton, flip_idx, sigmas), read
        with the class table (no annotations); only for a format with ``has_keypoints``."""
        raise NotImplementedError(f"{type(self).__name__} has no keypoints")

    @abstractmethod
    def samples(self, spec: Any, name: str, class_names: list[str]) -> DetectionSplit:
        """The records of the split ``spec`` (a split name or the format's dict), named ``name``;
        ``class_names`` are the datamodule's (the labels of a format without its own class table)."""

    def check_split(self, spec: Any, split: str, class_names: list[str]) -> tuple[list[Any], list[Any]]:
        """For the data check: ``(one job per image, problems of the annotation files)`` of split
        ``spec`` (see :mod:`visiontasks.data.detection.check`). This default reads the split with
        :meth:`samples` (so its first format error ends the split's listing); a format overrides it
        to list every wrong entry."""
        from .check import split_jobs_from_reader

        return split_jobs_from_reader(self, spec, split, class_names)

    # -- writing (synthetic sets are written in the real layouts) ------------------------------------
    @staticmethod
    def image_file(split: str, index: int) -> str:
        """Where image ``index`` of ``split`` goes, relative to the root."""
        return f"images/{split}/{index:06d}.png"

    @staticmethod
    def written_category_ids(num_classes: int) -> list[int]:
        """The dataset ids :meth:`write` gives the classes."""
        return list(range(num_classes))

    @classmethod
    @abstractmethod
    def write(cls, root: Path, splits: dict[str, list[DetectionRecord]], class_names: list[str],
              keypoint_spec: KeypointSpec | None = None) -> None:
        """Write the annotations of ``splits`` (records whose images are already under ``root``);
        with ``keypoint_spec`` the records' keypoints too (a format with ``has_keypoints``)."""
