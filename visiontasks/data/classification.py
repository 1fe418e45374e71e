"""Classification data: ImageFolder, torchvision MNIST/FashionMNIST/CIFAR-10 from a local root,
scikit-learn's bundled digits (offline), and a synthetic shapes set written as an ImageFolder.

Every sample is ``{"image": float32 [in_chans, H, W], "label": int64, "id": str}`` (``id``: the file
path, or ``"<source>:<index>"``). Images of any mode (grey, RGB, RGBA, palette) are converted to
``in_chans`` (1 or 3) before the albumentations pipeline.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .classification_transforms import Augment, classification_transforms, default_mean_std
from .io import IMAGE_EXTENSIONS, check_images, read_image
from .shapes import SHAPE_NAMES, render_scene

Source = Literal["imagefolder", "mnist", "fashionmnist", "cifar10", "digits", "synthetic"]
TORCHVISION_SOURCES = {"mnist": "MNIST", "fashionmnist": "FashionMNIST", "cifar10": "CIFAR10"}


class ArraySource:
    """Images held in memory: ``images uint8 [N, H, W]`` or ``[N, H, W, C]`` with ``labels [N]``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, prefix: str) -> None:
        self.images, self.labels, self.prefix = images, labels.astype(np.int64), prefix

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, i: int, channels: int) -> tuple[np.ndarray, int, str]:
        img = self.images[i]
        if img.ndim == 2:
            img = img[..., None]
        if img.shape[-1] == 1 and channels == 3:
            img = np.repeat(img, 3, axis=-1)
        elif img.shape[-1] == 3 and channels == 1:
            img = np.round(img @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)[..., None]
        return np.ascontiguousarray(img), int(self.labels[i]), f"{self.prefix}:{i}"


class FileSource:
    """Image files with labels; decoded on access (errors name the file)."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int]) -> None:
        self.paths, self.labels = list(paths), list(labels)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int, channels: int) -> tuple[np.ndarray, int, str]:
        return read_image(self.paths[i], channels), int(self.labels[i]), str(self.paths[i])


class ClassificationDataset(Dataset):
    """``source`` restricted to ``indices``, through ``transform``."""

    def __init__(self, source: Any, indices: Sequence[int], transform: Callable, channels: int) -> None:
        self.source, self.indices, self.transform, self.channels = source, list(indices), transform, channels

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image, label, key = self.source.load(self.indices[i], self.channels)
        return {"image": self.transform(image=image)["image"], "label": label, "id": key}


def scan_image_folder(root: Path, skip_bad_images: bool = False) -> tuple[list[Path], list[int], list[str]]:
    """``root/<class>/<image>`` -> (paths, labels, class names sorted). Clear errors for a missing
    root, no class folders, or empty class folders; unreadable files raise or are skipped."""
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ValueError(f"image folder {root} has no class sub-folders (expected {root}/<class>/<image>)")
    paths: list[Path] = []
    labels: list[int] = []
    empty = []
    for idx, name in enumerate(classes):
        files = sorted(
            p for p in (root / name).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not files:
            empty.append(name)
        paths += files
        labels += [idx] * len(files)
    if empty:
        raise ValueError(
            f"image folder {root}: class folder(s) with no images: {', '.join(empty)} "
            f"(extensions looked for: {', '.join(IMAGE_EXTENSIONS)})"
        )
    if skip_bad_images:
        good, _ = check_images(paths, skip_bad=True, what=str(root))
        paths = [paths[i] for i in good]
        labels = [labels[i] for i in good]
    return paths, labels, classes


def write_synthetic_image_folder(root: Path, num_classes: int, per_class: int, size: int, seed: int) -> None:
    """One centred shape per image, class = shape kind, written as ``root/<shape>/<n>.png``."""
    from PIL import Image

    stamp = root / ".synthetic.json"
    settings = {"num_classes": num_classes, "per_class": per_class, "size": size, "seed": seed}
    if stamp.is_file() and json.loads(stamp.read_text()) == settings:
        return
    rng = np.random.default_rng(seed)
    for label in range(num_classes):
        folder = root / SHAPE_NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        made = 0
        while made < per_class:
            image, instances = render_scene(rng, size, size, num_classes, max_objects=1, size_range=(0.2, 0.4))
            if not instances or instances[0].label != label:
                continue
            Image.fromarray(image).save(folder / f"{made:05d}.png")
            made += 1
    stamp.write_text(json.dumps(settings))


class ClassificationDataModule(pl.LightningDataModule):
    """Datamodule for every classification source.

    Args:
        source: ``imagefolder`` (``root/train/<class>/*``, optional ``root/val``, ``root/test``),
            ``mnist`` / ``fashionmnist`` / ``cifar10`` (torchvision, read from ``root``; fetched only
            when ``download: true``), ``digits`` (scikit-learn's bundled 8x8 digits, offline) or
            ``synthetic`` (shapes written once as an ImageFolder under ``root``).
        root: dataset folder (default ``data/<source>``).
        image_size: side (or ``[H, W]``) images are resized to.
        in_chans: 1 or 3; images are converted to it. Must equal the model's ``in_chans``.
        val_fraction / test_fraction: seeded, stratified splits for sources without them.
        augment: train preset (``none``, ``light``, ``standard``); eval is resize + normalise.
        mean / std: normalisation (default ImageNet for 3 channels, 0.5/0.5 for 1).
        skip_bad_images: skip unreadable files in an ImageFolder with a warning and a count
            (default: a clear error naming the file).
        predict_root: a folder of images (any layout) for ``predict``; default: the test split.
    """

    def __init__(
        self,
        source: Source = "imagefolder",
        root: str | None = None,
        image_size: int | tuple[int, int] = 32,
        in_chans: int = 3,
        batch_size: int = 64,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 0,
        augment: Augment = "light",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        download: bool = False,
        skip_bad_images: bool = False,
        predict_root: str | None = None,
        synthetic_classes: int = 4,
        synthetic_per_class: int = 60,
    ) -> None:
        super().__init__()
        if in_chans not in (1, 3):
            raise ValueError(f"in_chans must be 1 or 3, got {in_chans}")
        if source not in ("imagefolder", "digits", "synthetic", *TORCHVISION_SOURCES):
            raise ValueError(f"unknown source {source!r}")
        self.source = source
        self.root = Path(root) if root else Path("data") / source
        self.image_size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.in_chans = in_chans
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.augment = augment
        default_mean, default_std = default_mean_std(in_chans)
        self.mean = tuple(mean) if mean is not None else default_mean
        self.std = tuple(std) if std is not None else default_std
        if len(self.mean) != in_chans or len(self.std) != in_chans:
            raise ValueError(f"mean and std need {in_chans} value(s) each, got {self.mean} and {self.std}")
        self.download, self.skip_bad_images = download, skip_bad_images
        self.predict_root = Path(predict_root) if predict_root else None
        self.synthetic_classes, self.synthetic_per_class = synthetic_classes, synthetic_per_class
        self.class_names: list[str] | None = None
        self._splits: dict[str, tuple[Any, list[int]]] = {}

    @property
    def num_classes(self) -> int:
        if self.class_names is None:
            self.setup()
        return len(self.class_names)

    # -- building the splits ------------------------------------------------------------------
    def _split(self, labels: np.ndarray, fractions: Sequence[float]) -> list[list[int]]:
        """Seeded stratified split of ``range(len(labels))``: one list per fraction + the rest first."""
        from sklearn.model_selection import train_test_split

        rest = np.arange(len(labels))
        parts: list[list[int]] = []
        for frac in fractions:
            if frac <= 0:
                parts.append([])
                continue
            strat = labels[rest] if min(np.bincount(labels[rest])[np.unique(labels[rest])]) >= 2 else None
            rest, part = train_test_split(rest, test_size=frac, random_state=self.seed, stratify=strat)
            parts.append(sorted(part.tolist()))
        return [sorted(rest.tolist()), *parts]

    def _load_torchvision(self, train: bool) -> ArraySource:
        import torchvision.datasets as tvd

        cls = getattr(tvd, TORCHVISION_SOURCES[self.source])
        try:
            ds = cls(str(self.root), train=train, download=self.download)
        except RuntimeError as err:
            raise FileNotFoundError(
                f"{TORCHVISION_SOURCES[self.source]} not found under {self.root} ({err}); put the files "
                "there or set data.init_args.download: true"
            ) from None
        data = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else np.asarray(ds.data)
        self._tv_classes = list(ds.classes)
        return ArraySource(data.astype(np.uint8), np.asarray(ds.targets), f"{self.source}:{'train' if train else 'test'}")

    def setup(self, stage: str | None = None) -> None:
        if self._splits:
            return
        if self.source == "digits":
            from sklearn.datasets import load_digits

            digits = load_digits()
            images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
            src = ArraySource(images, digits.target, "digits")
            train, val, test = self._split(src.labels, [self.val_fraction, self.test_fraction])
            self._splits = {"train": (src, train), "val": (src, val), "test": (src, test)}
            self.class_names = [str(i) for i in range(10)]
        elif self.source in TORCHVISION_SOURCES:
            src = self._load_torchvision(train=True)
            test_src = self._load_torchvision(train=False)
            train, val = self._split(src.labels, [self.val_fraction])
            self._splits = {"train": (src, train), "val": (src, val), "test": (test_src, list(range(len(test_src))))}
            self.class_names = self._tv_classes
        else:
            if self.source == "synthetic":
                write_synthetic_image_folder(
                    self.root / "train", self.synthetic_classes, self.synthetic_per_class, max(self.image_size), self.seed
                )
            self._setup_image_folder()
        if len(self._splits["val"][1]) == 0:
            raise ValueError(f"{self.source}: the validation split is empty; raise val_fraction or add data")

    def _setup_image_folder(self) -> None:
        train_dir = self.root / "train" if (self.root / "train").is_dir() else self.root
        if not train_dir.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        paths, labels, classes = scan_image_folder(train_dir, self.skip_bad_images)
        src = FileSource(paths, labels)
        splits: dict[str, tuple[Any, list[int]]] = {}
        have_val = (self.root / "val").is_dir()
        have_test = (self.root / "test").is_dir()
        fractions = [0.0 if have_val else self.val_fraction, 0.0 if (have_test or have_val) else self.test_fraction]
        train, val, test = self._split(np.asarray(labels), fractions)
        splits["train"] = (src, train)
        for name, own, idx in (("val", have_val, val), ("test", have_test, test)):
            if own:
                p, lab, cls = scan_image_folder(self.root / name, self.skip_bad_images)
                if cls != classes:
                    raise ValueError(
                        f"{self.root / name} has classes {cls} but {train_dir} has {classes}; they must match"
                    )
                splits[name] = (FileSource(p, lab), list(range(len(p))))
            else:
                splits[name] = (src, idx)
        if not splits["test"][1]:
            splits["test"] = splits["val"]  # an ImageFolder with train/ and val/ only tests on val
        self._splits = splits
        self.class_names = classes

    # -- loaders ------------------------------------------------------------------------------
    def _transform(self, train: bool):  # noqa: ANN202
        return classification_transforms(self.image_size, train, self.augment, self.mean, self.std, self.in_chans)

    def _loader(self, split: str, train: bool) -> DataLoader:
        self.setup()
        src, idx = self._splits[split]
        ds = ClassificationDataset(src, idx, self._transform(train), self.in_chans)
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=train,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=train and len(ds) > self.batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        if self.predict_root is None:
            return self._loader("test", train=False)
        if not self.predict_root.is_dir():
            raise FileNotFoundError(f"predict_root {self.predict_root} does not exist")
        files = sorted(p for p in self.predict_root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise ValueError(f"predict_root {self.predict_root} holds no images")
        if self.skip_bad_images:
            good, _ = check_images(files, skip_bad=True, what=str(self.predict_root))
            files = [files[i] for i in good]
        ds = ClassificationDataset(FileSource(files, [-1] * len(files)), range(len(files)), self._transform(False), self.in_chans)
        return DataLoader(ds, batch_size=self.batch_size, num_workers=self.num_workers)

    def state_dict(self) -> dict[str, Any]:
        return {"class_names": self.class_names}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("class_names") and self.class_names and state["class_names"] != self.class_names:
            warnings.warn(f"checkpoint classes {state['class_names']} differ from the data's {self.class_names}")
