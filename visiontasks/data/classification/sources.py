"""Classification sources as objects, registered by name (the datamodule's ``source``).

Each source knows its class names cheaply (a fixed list, the folder names, the synthetic settings)
and builds the ``train`` / ``val`` / ``test`` splits: ``{split: (image source, indices)}``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from visiontasks.errors import InvalidInputError, MissingFileError

from ..io import IMAGE_EXTENSIONS, check_images, list_image_files
from ..registry import Registry
from .dataset import ArraySource, FileSource, ImageSource
from .synthetic import synthetic_class_names, write_synthetic_image_folder

Splits = dict[str, tuple[ImageSource, list[int]]]
CLASSIFICATION_SOURCES: Registry["ClassificationSource"] = Registry("classification source")
register_source = CLASSIFICATION_SOURCES.register
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@dataclass(frozen=True)
class SourceOptions:
    """The datamodule's settings a source may use."""

    root: Path
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    download: bool = False
    skip_bad_images: bool = False
    image_side: int = 32  # synthetic images' side
    synthetic_classes: int = 4
    synthetic_per_class: int = 60


def stratified_split(labels: np.ndarray, fractions: Sequence[float], seed: int) -> list[list[int]]:
    """Seeded stratified split of ``range(len(labels))``: the rest first, then one list per fraction."""
    from sklearn.model_selection import train_test_split

    rest = np.arange(len(labels))
    parts: list[list[int]] = []
    for frac in fractions:
        if frac <= 0:
            parts.append([])
            continue
        strat = labels[rest] if min(np.bincount(labels[rest])[np.unique(labels[rest])]) >= 2 else None
        rest, part = train_test_split(rest, test_size=frac, random_state=seed, stratify=strat)
        parts.append(sorted(part.tolist()))
    return [sorted(rest.tolist()), *parts]


def class_folders(root: Path) -> list[str]:
    """The class sub-folders of an ImageFolder ``root``, sorted (hidden folders left out)."""
    if not root.is_dir():
        raise MissingFileError(f"image folder {root} does not exist")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise InvalidInputError(f"image folder {root} has no class sub-folders (expected {root}/<class>/<image>)")
    return classes


def scan_image_folder(root: Path, skip_bad_images: bool = False) -> tuple[list[Path], list[int], list[str]]:
    """``root/<class>/<image>`` -> (paths, labels, class names sorted). Clear errors for a missing
    root, no class folders, or empty class folders; unreadable files raise or are skipped."""
    classes = class_folders(root)
    paths: list[Path] = []
    labels: list[int] = []
    empty = []
    for idx, name in enumerate(classes):
        files = list_image_files(root / name, recursive=True)
        if not files:
            empty.append(name)
        paths += files
        labels += [idx] * len(files)
    if empty:
        raise InvalidInputError(
            f"image folder {root}: class folder(s) with no images: {', '.join(empty)} "
            f"(extensions looked for: {', '.join(IMAGE_EXTENSIONS)})"
        )
    if skip_bad_images:
        good, _ = check_images(paths, skip_bad=True, what=str(root))
        paths = [paths[i] for i in good]
        labels = [labels[i] for i in good]
    return paths, labels, classes


class ClassificationSource(ABC):
    """One kind of classification data (see the subclasses)."""

    name: str  # set by register_source

    def __init__(self, options: SourceOptions) -> None:
        self.options = options

    @abstractmethod
    def class_names(self) -> list[str]:
        """The class names (label ``k`` is the k-th), found without reading the images."""

    @abstractmethod
    def splits(self) -> Splits:
        """``{"train", "val", "test"}: (source, indices)``."""


@register_source("digits")
class DigitsSource(ClassificationSource):
    """scikit-learn's bundled 8x8 digits (offline), split with the seeded stratified fractions."""

    def class_names(self) -> list[str]:
        return [str(i) for i in range(10)]

    def splits(self) -> Splits:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
        src = ArraySource(images, digits.target, "digits")
        o = self.options
        train, val, test = stratified_split(src.labels, [o.val_fraction, o.test_fraction], o.seed)
        return {"train": (src, train), "val": (src, val), "test": (src, test)}


class TorchvisionSource(ClassificationSource):
    """A torchvision data set read from ``root`` (fetched only with ``download``); its test split
    is the official one, val a seeded stratified part of train."""

    dataset: str  # the torchvision class name

    def class_names(self) -> list[str]:
        import torchvision.datasets as tvd

        return list(getattr(tvd, self.dataset).classes)  # a class attribute: no file is read

    def _load(self, train: bool) -> ArraySource:
        import torchvision.datasets as tvd

        root = self.options.root
        try:
            ds = getattr(tvd, self.dataset)(str(root), train=train, download=self.options.download)
        except RuntimeError as err:
            raise MissingFileError(
                f"{self.dataset} not found under {root} ({err}); put the files "
                "there or set data.init_args.download: true"
            ) from None
        data = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else np.asarray(ds.data)
        return ArraySource(data.astype(np.uint8), np.asarray(ds.targets), f"{self.name}:{'train' if train else 'test'}")

    def splits(self) -> Splits:
        src, test_src = self._load(train=True), self._load(train=False)
        train, val = stratified_split(src.labels, [self.options.val_fraction], self.options.seed)
        return {"train": (src, train), "val": (src, val), "test": (test_src, list(range(len(test_src))))}


@register_source("mnist")
class MnistSource(TorchvisionSource):
    dataset = "MNIST"


@register_source("fashionmnist")
class FashionMnistSource(TorchvisionSource):
    dataset = "FashionMNIST"


@register_source("cifar10")
class Cifar10Source(TorchvisionSource):
    dataset = "CIFAR10"

    def class_names(self) -> list[str]:
        return list(CIFAR10_CLASSES)  # torchvision reads them from the files; they are fixed


@register_source("imagefolder")
class ImageFolderSource(ClassificationSource):
    """``root/train/<class>/*`` (or ``root/<class>/*``) with optional ``root/val``, ``root/test``;
    missing splits are seeded stratified parts of train (an ImageFolder with train and val only
    tests on val)."""

    @property
    def train_dir(self) -> Path:
        root = self.options.root
        return root / "train" if (root / "train").is_dir() else root

    def class_names(self) -> list[str]:
        return class_folders(self.train_dir)

    def splits(self) -> Splits:
        o = self.options
        train_dir = self.train_dir
        paths, labels, classes = scan_image_folder(train_dir, o.skip_bad_images)
        src = FileSource(paths, labels)
        have_val, have_test = (o.root / "val").is_dir(), (o.root / "test").is_dir()
        fractions = [0.0 if have_val else o.val_fraction, 0.0 if (have_test or have_val) else o.test_fraction]
        train, val, test = stratified_split(np.asarray(labels), fractions, o.seed)
        splits: Splits = {"train": (src, train)}
        for name, own, idx in (("val", have_val, val), ("test", have_test, test)):
            if own:
                p, lab, cls = scan_image_folder(o.root / name, o.skip_bad_images)
                if cls != classes:
                    raise InvalidInputError(f"{o.root / name} has classes {cls} but {train_dir} has {classes}; they must match")
                splits[name] = (FileSource(p, lab), list(range(len(p))))
            else:
                splits[name] = (src, idx)
        if not splits["test"][1]:
            splits["test"] = splits["val"]  # an ImageFolder with train/ and val/ only tests on val
        return splits


@register_source("synthetic")
class SyntheticSource(ImageFolderSource):
    """Centred shapes written once as an ImageFolder under ``root/train`` (then read as one)."""

    def class_names(self) -> list[str]:
        return synthetic_class_names(self.options.synthetic_classes)

    def splits(self) -> Splits:
        o = self.options
        write_synthetic_image_folder(o.root / "train", o.synthetic_classes, o.synthetic_per_class, o.image_side, o.seed)
        return super().splits()
