"""Finding (image, mask) pairs on disk: one reader class per layout, registered by name.

Layouts (the ``format`` names of :data:`SEGMENTATION_READERS`):
- ``folder``: ``<images>/<name>.<ext>`` with ``<masks>/<name><mask_suffix>`` (sub-folders mirrored);
- ``voc`` (Pascal VOC): ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png``, ids listed in
  ``ImageSets/Segmentation/<split>.txt``;
- ``dataset_yaml`` (COCO128-segmentation style): ``<split>: {images: DIR, masks: DIR}`` relative to
  the YAML's folder, and ``classes: {id: name}`` with possibly sparse ids;
- ``synthetic``: the ``folder`` layout, generated first by :func:`write_synthetic_segmentation`.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from visiontasks.errors import InvalidInputError, MissingFileError

from ..io import IMAGE_EXTENSIONS, list_image_files
from ..missing import SHOWN, raise_if_missing, read_list_lines
from ..registry import Registry
from .masks import MaskError
from .synthetic import synthetic_class_names, write_synthetic_segmentation

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip


@dataclass(frozen=True)
class SegmentationSample:
    """One image file and its mask file (``None`` for images to predict on)."""

    image: Path
    mask: Path | None


def _pair_up(pairs: Iterable[tuple[Path, Path]], where: str, skip: bool) -> list[SegmentationSample]:
    """The (image, mask) pairs whose mask exists; missing masks raise a :class:`MaskError` naming the
    first images and the masks looked for, or (``skip``) leave those images out with one warning."""
    pairs = list(pairs)
    found = [mask.is_file() for _, mask in pairs]
    samples = [SegmentationSample(img, mask) for (img, mask), ok in zip(pairs, found) if ok]
    missing = [pair for pair, ok in zip(pairs, found) if not ok]
    total = len(pairs)
    if not missing:
        return samples
    shown = "; ".join(f"{img} -> {mask}" for img, mask in missing[:SHOWN])
    more = f"; and {len(missing) - SHOWN} more" if len(missing) > SHOWN else ""
    msg = f"{where}: {len(missing)} of {total} images have no mask (image -> expected mask: {shown}{more})"
    if not skip:
        raise MaskError(msg + "; add the masks, or set skip_missing_masks: true to leave those images out")
    warnings.warn(msg + "; those images are skipped", stacklevel=3)
    return samples


def list_folder_pairs(
    image_dir: str | Path,
    mask_dir: str | Path,
    mask_suffix: str = ".png",
    skip_missing_masks: bool = False,
) -> list[SegmentationSample]:
    """Every image under ``image_dir`` with the mask ``mask_dir/<same relative path><mask_suffix>``.

    A missing mask raises a :class:`MaskError` naming the image and the mask looked for (or, with
    ``skip_missing_masks``, the image is left out with one warning giving the count).
    """
    image_dir, mask_dir = Path(image_dir), Path(mask_dir)
    if not image_dir.is_dir():
        raise MissingFileError(f"image folder {image_dir} does not exist")
    if not mask_dir.is_dir():
        raise MissingFileError(f"mask folder {mask_dir} does not exist (images are in {image_dir})")
    images = list_image_files(image_dir, recursive=True)
    if not images:
        raise MissingFileError(f"no images in {image_dir} (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    pairs = [(img, mask_dir / img.relative_to(image_dir).with_suffix(mask_suffix)) for img in images]
    return _pair_up(pairs, str(image_dir), skip_missing_masks)


def list_voc_pairs(root: str | Path, split: str, skip_missing_masks: bool = False) -> list[SegmentationSample]:
    """Pascal VOC segmentation: ids of ``ImageSets/Segmentation/<split>.txt`` under ``root``
    (the ``VOC2012`` folder)."""
    root = Path(root)
    lst = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not lst.is_file():
        have = sorted(p.stem for p in (root / "ImageSets" / "Segmentation").glob("*.txt"))
        raise MissingFileError(
            f"VOC split list {lst} does not exist"
            + (f"; splits found: {', '.join(have)}" if have else f"; is {root} a VOC20xx folder?")
        )
    lines = read_list_lines(lst)
    images = [(n, root / "JPEGImages" / f"{i}.jpg") for n, i in lines]
    raise_if_missing(str(lst), [f"line {n}: {img}" for n, img in images if not img.is_file()], len(images),
                     hint="restore the images or remove their ids from the list")
    pairs = [(img, root / "SegmentationClass" / f"{img.stem}.png") for _, img in images]
    return _pair_up(pairs, str(lst), skip_missing_masks)


def read_dataset_yaml(path: str | Path) -> dict[str, Any]:
    """A COCO128-segmentation style YAML -> ``{"splits": {name: (image_dir, mask_dir)},
    "classes": {id: name}}`` with folders resolved against the YAML's folder.

    ``path`` is the YAML file or a folder holding ``config.yaml`` / ``data.yaml``.
    """
    path = Path(path)
    if path.is_dir():
        found = [path / n for n in ("config.yaml", "data.yaml", "dataset.yaml") if (path / n).is_file()]
        if not found:
            raise MissingFileError(f"no config.yaml / data.yaml / dataset.yaml in {path}")
        path = found[0]
    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise InvalidInputError(f"cannot read dataset YAML {path}: {err}") from None
    if not isinstance(cfg, dict) or "classes" not in cfg:
        raise InvalidInputError(f"dataset YAML {path} needs a 'classes: {{id: name}}' mapping")
    classes = cfg["classes"]
    if isinstance(classes, list):
        classes = dict(enumerate(classes))
    splits = {}
    for name, entry in cfg.items():
        if isinstance(entry, dict) and "images" in entry and "masks" in entry:
            splits[name] = ((path.parent / entry["images"]).resolve(), (path.parent / entry["masks"]).resolve())
    if not splits:
        raise InvalidInputError(f"dataset YAML {path} has no split with 'images' and 'masks' folders")
    return {"splits": splits, "classes": {int(k): str(v) for k, v in classes.items()}, "path": path}


# -- readers ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReaderOptions:
    """What the readers may need besides the root (each reads the options of its layout).

    ``image_dir`` / ``mask_dir`` / ``mask_suffix``: the folder layout; ``skip_missing_masks``: leave
    out images without a mask (one warning) instead of raising; ``synthetic``: the keyword arguments
    of :func:`write_synthetic_segmentation` (``counts``, ``image_size``, ``num_shapes``, ...).
    """

    image_dir: str = "images"
    mask_dir: str = "masks"
    mask_suffix: str = ".png"
    skip_missing_masks: bool = False
    synthetic: dict[str, Any] | None = None


class SegmentationReader(ABC):
    """Finds the (image, mask) pairs of one layout under ``root``."""

    name: str  # set by register_reader

    def __init__(self, root: str | Path, options: ReaderOptions | None = None) -> None:
        self.root = Path(root)
        self.options = options or ReaderOptions()

    def class_table(self, ignore_ids: list[int]) -> tuple[list[str] | None, dict[int, int | str] | None]:
        """``(class names, default remap raw id -> class)`` known from the layout alone; ``None``
        names: the layout has no class table (the config must give the classes)."""
        return None, None

    def prepare(self) -> None:
        """Make the files exist (a generated set writes itself here); reading needs nothing."""

    @abstractmethod
    def samples(self, split: str) -> list[SegmentationSample] | None:
        """The pairs of ``split``, or ``None`` when the data has no such split."""

    @abstractmethod
    def layout_hint(self) -> str:
        """What the layout expects under the root (for an error about a missing split)."""


SEGMENTATION_READERS: Registry[SegmentationReader] = Registry("segmentation format")
register_reader = SEGMENTATION_READERS.register


@register_reader("folder")
class FolderReader(SegmentationReader):
    """``root/<image_dir>/<split>/`` with masks in ``root/<mask_dir>/<split>/``."""

    def samples(self, split: str) -> list[SegmentationSample] | None:
        o = self.options
        images = self.root / o.image_dir / split
        if not images.is_dir():
            return None
        return list_folder_pairs(images, self.root / o.mask_dir / split, o.mask_suffix, o.skip_missing_masks)

    def layout_hint(self) -> str:
        return f"expected {self.options.image_dir}/<split>/ and {self.options.mask_dir}/<split>/ under it"


@register_reader("synthetic")
class SyntheticReader(FolderReader):
    """The folder layout of a generated shapes set (written by :meth:`prepare`, reused when its
    settings match); class 0 is the background, then the shape kinds."""

    def class_table(self, ignore_ids: list[int]) -> tuple[list[str] | None, dict[int, int | str] | None]:
        return synthetic_class_names(int((self.options.synthetic or {}).get("num_shapes", 6))), None

    def prepare(self) -> None:
        write_synthetic_segmentation(self.root, **(self.options.synthetic or {}))


@register_reader("voc")
class VocReader(SegmentationReader):
    """Pascal VOC segmentation under the ``VOC20xx`` folder; its 21 classes."""

    def class_table(self, ignore_ids: list[int]) -> tuple[list[str] | None, dict[int, int | str] | None]:
        return list(VOC_CLASSES), None

    def samples(self, split: str) -> list[SegmentationSample] | None:
        if not (self.root / "ImageSets" / "Segmentation" / f"{split}.txt").is_file():
            return None
        return list_voc_pairs(self.root, split, self.options.skip_missing_masks)

    def layout_hint(self) -> str:
        have = sorted(p.stem for p in (self.root / "ImageSets" / "Segmentation").glob("*.txt"))
        return f"expected ImageSets/Segmentation/<split>.txt; splits found: {', '.join(have) or 'none'}"


@register_reader("dataset_yaml")
class DatasetYamlReader(SegmentationReader):
    """A COCO128-segmentation style YAML (``root``: the file or its folder), read once. Its classes
    are the YAML's ids less ``ignore_ids``, numbered 0.. in sorted order."""

    def __init__(self, root: str | Path, options: ReaderOptions | None = None) -> None:
        super().__init__(root, options)
        self._yaml: dict[str, Any] | None = None

    @property
    def yaml(self) -> dict[str, Any]:
        if self._yaml is None:
            self._yaml = read_dataset_yaml(self.root)
        return self._yaml

    def class_table(self, ignore_ids: list[int]) -> tuple[list[str] | None, dict[int, int | str] | None]:
        kept = {k: v for k, v in sorted(self.yaml["classes"].items()) if k not in ignore_ids}
        return list(kept.values()), {raw: i for i, raw in enumerate(kept)}  # sparse ids -> 0..K-1

    def samples(self, split: str) -> list[SegmentationSample] | None:
        if split not in self.yaml["splits"]:
            return None
        image_dir, mask_dir = self.yaml["splits"][split]
        o = self.options
        return list_folder_pairs(image_dir, mask_dir, o.mask_suffix, o.skip_missing_masks)

    def layout_hint(self) -> str:
        return f"splits in the YAML: {sorted(self.yaml['splits'])}"
