"""Decoding mask files into class-index arrays, with errors that name the file.

A mask file becomes ``int64 [H, W]`` holding class indices ``0..K-1`` or the ignore index. Three
encodings are read:

- index masks (``mode="index"``): one id per pixel, greyscale (``L``/``I;16``) or palette (``P``,
  e.g. Pascal VOC, whose border value 255 is the ignore index); a palette PNG is read as its indices;
- colour-coded masks (``mode="color"``): RGB, mapped through a colour -> class table;
- either, followed by a remapping table ``raw id -> class`` (sparse ids -> contiguous, several ids
  merged into one class, some ids -> ignore), e.g. COCO panoptic ids 0..200 with gaps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Mapping, Sequence

import numpy as np
from PIL import Image

from visiontasks.errors import InvalidInputError

IGNORE_WORDS = ("ignore", "void")


class MaskError(InvalidInputError):
    """A mask file that cannot be turned into class indices (wrong values, wrong kind, unreadable)."""


def voc_colormap(n: int = 256) -> np.ndarray:
    """The Pascal VOC palette ``uint8 [n, 3]`` (class ``i`` -> colour; bit-interleaving of ``i``)."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


def save_index_mask(path: str | Path, mask: np.ndarray, palette: np.ndarray | None = None) -> None:
    """Write ``mask`` (integers 0..255, ``[H, W]``) as a palette PNG: the pixel values are the class
    indices, the palette (default: VOC's) only makes the file viewable."""
    if mask.ndim != 2 or mask.min(initial=0) < 0 or mask.max(initial=0) > 255:
        raise ValueError(f"an index mask must be [H, W] with values 0..255, got {mask.shape}")
    img = Image.fromarray(mask.astype(np.uint8), mode="P")
    pal = voc_colormap() if palette is None else np.asarray(palette, dtype=np.uint8)
    img.putpalette(pal.reshape(-1).tolist())
    img.save(path)


def _pack(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _colour_list(values: Sequence[int]) -> str:
    return ", ".join(f"({v >> 16}, {(v >> 8) & 255}, {v & 255})" for v in values)


class MaskDecoder:
    """Turns mask files into ``int64 [H, W]`` class indices (``0..num_classes-1`` or ``ignore_index``).

    Args:
        num_classes: ``K``.
        ignore_index: label of pixels excluded from loss and metrics (255: VOC's border value).
            In index masks the raw value ``ignore_index`` always means "ignore".
        mode: ``"index"`` or ``"color"``.
        class_colors: for ``mode="color"``: colour ``[r, g, b]`` of class ``i`` at position ``i``, or
            ``"voc"`` for the Pascal VOC palette.
        ignore_colors: colours meaning "ignore" in colour masks (e.g. VOC's border ``[224, 224, 192]``).
        remap: ``raw id -> class index`` (or ``"ignore"``), applied to the ids of an index mask.
            Ids not listed raise an error unless ``unmapped="ignore"``.
        unmapped: what to do with ids/colours outside the tables: ``"error"`` or ``"ignore"``.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        mode: Literal["index", "color"] = "index",
        class_colors: Sequence[Sequence[int]] | str | None = None,
        ignore_colors: Sequence[Sequence[int]] | None = None,
        remap: Mapping[int, int | str] | None = None,
        unmapped: Literal["error", "ignore"] = "error",
    ) -> None:
        if mode not in ("index", "color"):
            raise InvalidInputError(f"mask mode must be 'index' or 'color', got {mode!r}")
        if unmapped not in ("error", "ignore"):
            raise InvalidInputError(f"unmapped must be 'error' or 'ignore', got {unmapped!r}")
        if 0 <= ignore_index < num_classes:
            raise InvalidInputError(f"ignore_index {ignore_index} collides with a class index (0..{num_classes - 1})")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mode = mode
        self.unmapped = unmapped
        self.remap = self._check_remap(remap)
        self.colour_table: dict[int, int] = {}
        if mode == "color":
            if class_colors is None:
                raise InvalidInputError("mask mode 'color' needs class_colors (one [r, g, b] per class, or 'voc')")
            if isinstance(class_colors, str):
                if class_colors.lower() != "voc":
                    raise InvalidInputError(f"class_colors must be a list of [r, g, b] or 'voc', got {class_colors!r}")
                class_colors = voc_colormap(num_classes).tolist()
                ignore_colors = list(ignore_colors or []) + [[224, 224, 192]]
            if len(class_colors) != num_classes:
                raise InvalidInputError(f"class_colors has {len(class_colors)} colours for {num_classes} classes")
            for i, c in enumerate(class_colors):
                key = int(_pack(np.asarray(c, dtype=np.int64)))
                if key in self.colour_table:
                    raise InvalidInputError(f"class_colors: colour {list(c)} is given to two classes")
                self.colour_table[key] = i
            for c in ignore_colors or []:
                self.colour_table[int(_pack(np.asarray(c, dtype=np.int64)))] = ignore_index
        elif class_colors is not None:
            raise InvalidInputError("class_colors is only used with mask mode 'color'")

    def _check_remap(self, remap: Mapping[int, int | str] | None) -> dict[int, int] | None:
        if remap is None:
            return None
        table: dict[int, int] = {}
        for raw, cls in remap.items():
            if isinstance(cls, str):
                if cls.lower() not in IGNORE_WORDS:
                    raise InvalidInputError(f"remap: id {raw} -> {cls!r}: a class index or 'ignore' expected")
                cls = self.ignore_index
            cls = int(cls)
            if not (0 <= cls < self.num_classes or cls == self.ignore_index):
                raise InvalidInputError(
                    f"remap: id {raw} -> {cls} is outside 0..{self.num_classes - 1} and not the "
                    f"ignore index {self.ignore_index}"
                )
            table[int(raw)] = cls
        return table

    # -- decoding ---------------------------------------------------------------------------------
    def read(self, path: str | Path) -> np.ndarray:
        """Read and decode the mask file ``path`` -> ``int64 [H, W]``."""
        path = Path(path)
        try:
            with Image.open(path) as img:
                img.load()
                raw = self._pixels(img, path)
        except FileNotFoundError:
            raise MaskError(f"mask file {path} does not exist") from None
        except MaskError:
            raise
        except Exception as err:  # noqa: BLE001 - any decoding failure is the file's fault
            raise MaskError(f"cannot read mask {path}: {err}") from None
        return self.decode(raw, path)

    def _pixels(self, img: Image.Image, path: Path) -> np.ndarray:
        if self.mode == "color":
            if img.mode not in ("RGB", "RGBA", "P"):
                raise MaskError(
                    f"mask {path} has mode {img.mode} (one value per pixel) but mask mode 'color' "
                    "expects RGB colour-coded masks; use mask_mode: index for index masks"
                )
            return np.asarray(img.convert("RGB"))
        if img.mode in ("P", "L", "I", "I;16", "I;16B", "I;16L", "1"):
            return np.asarray(img).astype(np.int64)
        if img.mode in ("LA", "PA"):
            return np.asarray(img)[..., 0].astype(np.int64)
        if img.mode in ("RGB", "RGBA"):
            rgb = np.asarray(img.convert("RGB"))
            if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
                return rgb[..., 0].astype(np.int64)  # grey ids saved as RGB
            colours = np.unique(_pack(rgb.reshape(-1, 3)))
            raise MaskError(
                f"mask {path} is an RGB image with {len(colours)} distinct colours (e.g. "
                f"{_colour_list(colours[:4].tolist())}), but index masks (one class id per pixel, "
                "PNG mode L or P) are expected. If the classes are coded by colour, set "
                "mask_mode: color and class_colors: [[r, g, b], ...] (one colour per class, or 'voc')"
            )
        raise MaskError(f"mask {path} has unsupported image mode {img.mode}")

    def decode(self, raw: np.ndarray, path: str | Path = "<array>") -> np.ndarray:
        """Map raw mask pixels (ids ``[H, W]`` or colours ``[H, W, 3]``) to class indices."""
        if self.mode == "color":
            return self._decode_colour(raw, path)
        ids = raw.astype(np.int64)
        if ids.size and ids.min() < 0:
            raise MaskError(f"mask {path} has negative values {sorted(set(ids[ids < 0].tolist()))[:10]}")
        values, inverse = np.unique(ids, return_inverse=True)
        mapped = np.array([self._map_id(int(v)) for v in values], dtype=np.int64)
        bad = values[mapped < 0]
        if bad.size:
            hint = (
                "add them to remap (id -> class or 'ignore') or set unmapped: ignore"
                if self.remap is not None
                else f"classes are 0..{self.num_classes - 1}; use remap to map ids to classes"
            )
            raise MaskError(
                f"mask {path} has values {bad[:20].tolist()}{' ...' if bad.size > 20 else ''} that are "
                f"neither a class (0..{self.num_classes - 1}) nor the ignore index "
                f"{self.ignore_index}; {hint}"
            )
        return mapped[inverse].reshape(ids.shape)

    def _map_id(self, v: int) -> int:
        """Class of raw id ``v``; -1 when it is invalid."""
        if self.remap is not None:
            if v in self.remap:
                return self.remap[v]
            if v == self.ignore_index or self.unmapped == "ignore":
                return self.ignore_index
            return -1
        if 0 <= v < self.num_classes or v == self.ignore_index:
            return v
        return self.ignore_index if self.unmapped == "ignore" else -1

    def _decode_colour(self, rgb: np.ndarray, path: str | Path) -> np.ndarray:
        if rgb.ndim != 3 or rgb.shape[-1] != 3:
            raise MaskError(f"mask {path}: colour masks must be [H, W, 3], got {list(rgb.shape)}")
        packed = _pack(rgb)
        values, inverse = np.unique(packed, return_inverse=True)
        fallback = self.ignore_index if self.unmapped == "ignore" else -1
        mapped = np.array([self.colour_table.get(int(v), fallback) for v in values], dtype=np.int64)
        bad = values[mapped < 0]
        if bad.size:
            raise MaskError(
                f"mask {path} has colours {_colour_list(bad[:10].tolist())}{' ...' if bad.size > 10 else ''} "
                "that are not in class_colors (nor ignore_colors); add them or set unmapped: ignore"
            )
        return mapped[inverse].reshape(rgb.shape[:2])
