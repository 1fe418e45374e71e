"""Image files: listing them, reading them with errors that name the file (never a traceback from
deep inside PIL), and the normalisation statistics every transform defaults to."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from visiontasks.errors import InvalidInputError
from visiontasks.preprocessing import IMAGENET_MEAN, IMAGENET_STD  # noqa: F401  (re-exported; stated once there)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")



def list_image_files(folder: str | Path, recursive: bool = False) -> list[Path]:
    """The image files (by extension, case-insensitive) in ``folder``, sorted; with ``recursive``
    also those in its sub-folders. Folders named like images (``x.png/``) are not files and are
    left out. A missing folder gives an empty list (callers say what was expected there)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


class ImageReadError(InvalidInputError):
    """An image file that cannot be decoded (truncated, not an image, unreadable)."""


# EXIF orientations 5-8 turn the image by 90 degrees: width and height swap.
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
_EXIF_ORIENTATION = 0x0112


def _to_uint8(img: Image.Image, path: Path) -> Image.Image:
    """An 8-bit image from any PIL mode. 16-bit and 32-bit integer images are scaled by the range
    of their type (65535 -> 255), never clipped; float images by [0, 1] when they lie in it, else
    by their own min..max (with a warning, since the true range is unknown)."""
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img).astype(np.float64)
        if mode == "I" and (arr.min() < 0 or arr.max() > 65535):
            lo, hi = float(arr.min()), float(arr.max())
            warnings.warn(f"{path}: 32-bit image with values {lo:g}..{hi:g}; scaled by its own range", stacklevel=3)
            arr = (arr - lo) / max(hi - lo, 1e-12) * 255.0
        else:  # 16-bit data (PNG/TIFF "I;16" or widened to "I"): the type's range is 0..65535
            arr = arr / 257.0
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    if mode == "F":
        arr = np.asarray(img).astype(np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if lo < 0 or hi > 1:
            warnings.warn(f"{path}: float image with values {lo:g}..{hi:g}; scaled by its own range", stacklevel=3)
            arr = (arr - lo) / max(hi - lo, 1e-12)
        return Image.fromarray(np.rint(np.nan_to_num(arr) * 255.0).astype(np.uint8), "L")
    return img


@dataclass(frozen=True, eq=False)
class InMemoryImage:
    """An image given as an object rather than a file (a PIL image or a numpy array), under a
    ``name`` that stands for its path in ids and messages (``str(x)`` is the name)."""

    name: str
    image: "Image.Image | np.ndarray"

    def __str__(self) -> str:
        return self.name


ImageInput = Union[str, Path, InMemoryImage]


def _array_to_pil(arr: np.ndarray, name: str) -> Image.Image:
    """A PIL image from ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` (RGB) or ``[H, W, 4]`` (RGBA) of any
    dtype; values are brought to 8 bits by the rules of :func:`_to_uint8` (uint16 by 65535 -> 255,
    floats by [0, 1] when they lie in it)."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4))) or arr.size == 0:
        raise InvalidInputError(f"{name}: an image array must be [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], "
                                f"got shape {tuple(arr.shape)}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.ndim == 2 and arr.dtype != np.uint8:  # one channel: PIL's own 16-bit / float modes
        if np.issubdtype(arr.dtype, np.integer) and arr.min() >= 0 and arr.max() <= 65535:
            return Image.fromarray(arr.astype(np.uint16))  # mode I;16
        if np.issubdtype(arr.dtype, np.integer):
            return Image.fromarray(arr.astype(np.int32))  # mode I
        return Image.fromarray(arr.astype(np.float32))  # mode F
    if arr.dtype != np.uint8:  # several channels: PIL has no 16-bit / float RGB, scale each like one
        scaled = [np.asarray(_to_uint8(_array_to_pil(arr[..., c], name), Path(name))) for c in range(arr.shape[-1])]
        arr = np.stack(scaled, axis=-1)
    return Image.fromarray(np.ascontiguousarray(arr))  # uint8: L, RGB or RGBA by the channels


def _pil_to_array(img: Image.Image, channels: int, path: Path) -> np.ndarray:
    img = ImageOps.exif_transpose(img)
    img = _to_uint8(img, path).convert("L" if channels == 1 else "RGB")
    return np.asarray(img)


def read_image(path: ImageInput, channels: int = 3) -> np.ndarray:
    """Decode ``path`` to ``uint8 [H, W, channels]`` (channels 1 or 3), turned upright by its EXIF
    orientation (as torchvision's ``decode_image(apply_exif_orientation=True)`` and labelling tools
    show it).

    Grayscale, RGBA (alpha dropped), palette, 16-bit (scaled by 65535 -> 255, not clipped) and float
    images are converted; a corrupt file raises :class:`ImageReadError` naming the file. An
    :class:`InMemoryImage` (PIL image or numpy array) is converted by the same rules.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if isinstance(path, InMemoryImage):
        img = path.image
        if isinstance(img, np.ndarray):
            img = _array_to_pil(img, path.name)
        elif not isinstance(img, Image.Image):
            raise InvalidInputError(f"{path.name}: expected a PIL image or a numpy array, got {type(img).__name__}")
        arr = _pil_to_array(img, channels, Path(path.name))
        return arr[..., None] if channels == 1 else arr
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()  # decode fully now: a truncated file fails here, not later
            arr = _pil_to_array(img, channels, path)
    except FileNotFoundError:
        raise ImageReadError(f"image file {path} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"cannot read image {path}: {err}") from None
    return arr[..., None] if channels == 1 else arr


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of the image as :func:`read_image` returns it (EXIF orientation applied),
    read from the header only."""
    return image_size_and_orientation(path)[0]


def image_size_and_orientation(path: str | Path) -> tuple[tuple[int, int], int]:
    """``((width, height) as read_image returns it, EXIF orientation 1..8)`` from the header only;
    orientations 5-8 swap the stored width and height."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            w, h = img.size
            try:  # PNG keeps EXIF after the image data: a truncated file fails here, but its size
                orientation = img.getexif().get(_EXIF_ORIENTATION, 1)  # is known; decoding reports it
            except (OSError, SyntaxError, ValueError):
                orientation = 1
    except FileNotFoundError:
        raise ImageReadError(f"image file {path} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"cannot read image {path}: {err}") from None
    return ((h, w) if orientation in _TRANSPOSING_ORIENTATIONS else (w, h)), int(orientation)


def check_images(paths: list[Path], skip_bad: bool, what: str = "dataset") -> tuple[list[int], list[Path]]:
    """Verify every file decodes; return (indices of good files, bad files).

    With ``skip_bad`` the bad ones are reported in one warning with their count; without it the first
    bad file raises :class:`ImageReadError`.
    """
    good, bad = [], []
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as img:
                img.load()  # full decode: verify() misses truncated JPEG data
            good.append(i)
        except Exception as err:  # noqa: BLE001 - every decoding failure is the file's fault
            if not skip_bad:
                raise ImageReadError(
                    f"cannot read image {p}: {err} (set skip_bad_images: true to skip such files)"
                ) from None
            bad.append(p)
    if bad:
        shown = ", ".join(str(b) for b in bad[:5])
        warnings.warn(f"{what}: skipped {len(bad)} unreadable image(s): {shown}", stacklevel=2)
    return good, bad
