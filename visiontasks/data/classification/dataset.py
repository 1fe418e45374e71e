"""Where classification images come from (in memory or files) and the dataset over them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
from torch.utils.data import Dataset, default_collate

from visiontasks.preprocessing import Preprocessing

from ..io import ImageInput, read_image
from .transforms import eval_transform


class ImageSource(Protocol):
    """Indexed images with labels: ``load(i, channels) -> (uint8 [H, W, channels], label, id)``."""

    def __len__(self) -> int: ...

    def load(self, i: int, channels: int) -> tuple[np.ndarray, int, str]: ...


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

    def label_and_id(self, i: int) -> tuple[int, str]:
        """Item ``i``'s label and id without decoding it (for cached images)."""
        return int(self.labels[i]), str(self.paths[i])


class ClassificationDataset(Dataset):
    """``source`` restricted to ``indices``, through ``transform``; with ``cache`` (a
    :class:`~visiontasks.data.cache.ImageCache` of this split, item ``i`` = ``indices[i]``) images
    come decoded from it instead of the files.

    Item: ``{"image": float32 [channels, H, W], "label": int64, "id": str}``.
    """

    def __init__(
        self, source: ImageSource, indices: Sequence[int], transform: Callable, channels: int, cache: Any = None
    ) -> None:
        self.source, self.indices, self.transform, self.channels = source, list(indices), transform, channels
        self.cache = cache

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if self.cache is not None:
            image = self.cache.get(i)["image"]
            label, key = self.source.label_and_id(self.indices[i])  # type: ignore[attr-defined]
        else:
            image, label, key = self.source.load(self.indices[i], self.channels)
        return {"image": self.transform(image=image)["image"], "label": label, "id": key}


def prediction_dataset(images: Sequence[ImageInput], prep: Preprocessing) -> ClassificationDataset:
    """``images`` (files or in-memory images, label -1) through the evaluation pipeline of ``prep``,
    as the datamodule's predict split (``id``: the path or the in-memory image's name)."""
    return ClassificationDataset(FileSource(images, [-1] * len(images)), range(len(images)), eval_transform(prep),
                                 prep.in_chans)


prediction_collate = default_collate  # equal-sized images: torch's own batching, as the datamodule's
