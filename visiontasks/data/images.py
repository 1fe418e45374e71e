"""Images to predict on without a data config: files, folders, globs or in-memory images, through a
checkpoint's evaluation :class:`~visiontasks.preprocessing.Preprocessing`, batched exactly as the
family's own datamodule batches its predict split (same dataset class, same transform builder,
same collate), so predictions equal those of ``visiontasks predict --config``."""

from __future__ import annotations

import glob
import importlib
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from visiontasks.errors import InvalidInputError, MissingFileError
from visiontasks.preprocessing import Preprocessing

from .base import VisionDataModule
from .io import IMAGE_EXTENSIONS, ImageInput, InMemoryImage, list_image_files

_GLOB_CHARS = set("*?[")


def resolve_images(sources: Any) -> list[ImageInput]:
    """Every image ``sources`` names, in order: an image file; a folder (its images, recursively,
    sorted); a glob pattern (``imgs/*.png``, ``**`` recursive; the image files it matches and the images
    of the folders it matches, sorted); a PIL image, a numpy array or a torch tensor (see
    :func:`tensor_to_arrays`), each an :class:`InMemoryImage` named ``image<i>``, ``i`` its position
    (the images of a ``[B, C, H, W]`` tensor in a list: ``image<i>_<b>``; a batch given alone is a
    list of its ``B`` images); or a list of these. A missing file, an empty folder or a glob matching
    no image raises an error naming it."""
    if isinstance(sources, torch.Tensor):
        arrays = tensor_to_arrays(sources, "image0" if sources.ndim != 4 else "the tensor batch")
        return [InMemoryImage(f"image{b}", a) for b, a in enumerate(arrays)]
    if isinstance(sources, (str, Path)) or not isinstance(sources, Iterable) or isinstance(sources, np.ndarray):
        sources = [sources]
    found: list[ImageInput] = []
    for i, src in enumerate(sources):
        if isinstance(src, (str, Path)):
            found += _resolve_path(src)
        elif isinstance(src, np.ndarray) or _is_pil(src):
            found.append(InMemoryImage(f"image{i}", src))
        elif isinstance(src, torch.Tensor):
            arrays = tensor_to_arrays(src, f"image{i}")
            found += [InMemoryImage(f"image{i}" if src.ndim == 3 else f"image{i}_{b}", a) for b, a in enumerate(arrays)]
        else:
            raise InvalidInputError(
                f"cannot predict on a {type(src).__name__}; give image files, folders, glob patterns, "
                "PIL images, numpy arrays or torch tensors"
            )
    if not found:
        raise InvalidInputError("no images given to predict on")
    return found


_TENSOR_HINT = "pass an RGB [3, H, W] or grey [1, H, W] tensor (or a batch [B, 3, H, W]), uint8 0..255 or float 0..1"


def tensor_to_arrays(tensor: torch.Tensor, name: str) -> list[np.ndarray]:
    """The images of an RGB (or grey) ``[C, H, W]`` or ``[B, C, H, W]`` tensor, ``C`` 3 or 1, as
    ``[H, W, C]`` numpy arrays read like any numpy array: uint8 values 0..255 as they are, float values
    0..1 (scaled by 255, rounded). Boxes and masks predicted for them are in the tensor's ``H x W``
    pixels. Another shape or dtype, or floats outside [0, 1], raise one :class:`InvalidInputError`
    naming ``name`` and what to pass."""
    shape = tuple(tensor.shape)
    if tensor.ndim not in (3, 4) or shape[-3] not in (1, 3) or tensor.numel() == 0:
        turned = tensor.ndim in (3, 4) and shape[-1] in (1, 3) and shape[-3] not in (1, 3)
        hint = f"; for [H, W, C] use .permute({'0, 3, 1, 2' if tensor.ndim == 4 else '2, 0, 1'})" if turned else ""
        raise InvalidInputError(f"{name}: a tensor of shape {shape} is not an image; {_TENSOR_HINT}{hint}")
    x = tensor.detach().cpu()
    if x.dtype == torch.uint8:
        arr = x.numpy()
    elif x.is_floating_point():
        x = x.to(torch.float32)
        if not bool(torch.isfinite(x).all()):
            raise InvalidInputError(f"{name}: the float tensor holds NaN or infinite values; {_TENSOR_HINT}")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise InvalidInputError(f"{name}: float tensor values {lo:g}..{hi:g} lie outside [0, 1]; {_TENSOR_HINT}")
        arr = x.numpy()
    else:
        raise InvalidInputError(f"{name}: a tensor of dtype {str(x.dtype).replace('torch.', '')}; {_TENSOR_HINT}")
    arr = np.moveaxis(arr, -3, -1).copy()  # [..., C, H, W] -> [..., H, W, C], not sharing the tensor's memory
    return [arr] if arr.ndim == 3 else list(arr)


def _is_pil(obj: Any) -> bool:
    from PIL import Image

    return isinstance(obj, Image.Image)


def _resolve_path(src: str | Path) -> list[ImageInput]:
    text = str(src)
    path = Path(text).expanduser()
    if path.is_dir():
        files = list_image_files(path, recursive=True)
        if not files:
            raise InvalidInputError(f"folder {path} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
        return list(files)
    if path.is_file():
        return [path]
    if _GLOB_CHARS & set(text):
        files: list[Path] = []
        for match in sorted(Path(p) for p in glob.glob(str(path), recursive=True)):
            if match.is_dir():  # a matched folder stands for its images, as a folder given by name
                files += list_image_files(match, recursive=True)
            elif match.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(match)
        if not files:
            raise MissingFileError(f"{text} matches no image files")
        return list(dict.fromkeys(files))  # "**" matches a folder and its files: each image once
    raise MissingFileError(f"image file or folder {path} does not exist")


class ImageFilesDataModule(VisionDataModule):
    """The predict split of images without labels, for a model whose task declares ``prediction_data``.

    Args:
        prediction_data: the task's ``prediction_data``: the import path of a module with
            ``prediction_dataset(images, prep)`` and ``prediction_collate`` (imported only now),
            e.g. ``visiontasks.data.detection.dataset``.
        images: what :func:`resolve_images` accepts (files, folders, globs, PIL images, arrays).
        preprocessing: the checkpoint's evaluation preprocessing (a ``Preprocessing`` or its dict).
        class_names: the model's classes (``num_classes`` is their count).
        category_ids: the dataset id of each class (COCO category ids) for the results file.
        batch_size, num_workers: loader settings.
    """

    def __init__(
        self,
        prediction_data: str,
        images: Any,
        preprocessing: Preprocessing | dict[str, Any],
        class_names: Sequence[str],
        category_ids: Sequence[int] | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, None, num_workers, cache="none")
        self.images = resolve_images(images)
        prep = preprocessing
        self.prep = prep if isinstance(prep, Preprocessing) else Preprocessing.from_dict(prep)
        self.class_names = [str(n) for n in class_names]
        if category_ids is not None and len(category_ids) == len(self.class_names):
            self.category_ids = [int(c) for c in category_ids]
        module = importlib.import_module(prediction_data)
        self._make_dataset: Callable[[Sequence[ImageInput], Preprocessing], Dataset] = module.prediction_dataset
        self._collate: Callable[[list[Any]], Any] = module.prediction_collate

    def preprocessing(self) -> Preprocessing:
        return self.prep

    def loader(self, stage: str) -> DataLoader:
        if stage != "predict":
            raise ValueError(f"images without labels can only be predicted on, not used for {stage!r}")
        return DataLoader(self._make_dataset(self.images, self.prep), batch_size=self.batch_size,
                          num_workers=self.num_workers, collate_fn=self._collate,
                          persistent_workers=False)
