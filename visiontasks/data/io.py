"""Image files: listing them, reading them with errors that name the file (never a traceback from
deep inside PIL), and the normalisation statistics every transform defaults to."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")

# ImageNet statistics of 0..1 RGB pixels: the default normalisation of every task's transforms
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def list_image_files(folder: str | Path, recursive: bool = False) -> list[Path]:
    """The image files (by extension, case-insensitive) in ``folder``, sorted; with ``recursive``
    also those in its sub-folders. Folders named like images (``x.png/``) are not files and are
    left out. A missing folder gives an empty list (callers say what was expected there)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


class ImageReadError(ValueError):
    """An image file that cannot be decoded (truncated, not an image, unreadable)."""


def read_image(path: str | Path, channels: int = 3) -> np.ndarray:
    """Decode ``path`` to ``uint8 [H, W, channels]`` (channels 1 or 3).

    Grayscale, RGBA (alpha dropped) and palette images are converted; a corrupt file raises
    :class:`ImageReadError` naming the file.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()  # decode fully now: a truncated file fails here, not later
            img = img.convert("L" if channels == 1 else "RGB")
            arr = np.asarray(img)
    except FileNotFoundError:
        raise ImageReadError(f"image file {path} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"cannot read image {path}: {err}") from None
    return arr[..., None] if channels == 1 else arr


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
