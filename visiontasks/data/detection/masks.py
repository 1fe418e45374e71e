"""Instance masks of detection records: COCO's two encodings, checked when read, decoded when loaded.

A record keeps each object's mask as COCO writes it (cheap to hold for a whole split): a list of
polygons ``[[x1, y1, x2, y2, ...], ...]`` in file pixels, or a run-length encoding
``{"size": [H, W], "counts": ...}`` (compressed string or uncompressed list). pycocotools (COCO's own
code) rasterises and decodes them, so a mask is exactly what COCO's evaluation would see.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import DatasetFormatError

Segmentation = Any  # list of polygons (flat pixel coordinates) or an RLE dict

# polygon points may lie on the far edge (x = W) and a little beyond by rounding; more is an error
EDGE_TOLERANCE = 1.0


def check_segmentation(seg: Segmentation, size: tuple[int, int] | None, where: str) -> Segmentation:
    """``seg`` when it is a valid COCO segmentation of an image of ``size`` = (H, W) (when known);
    otherwise :class:`DatasetFormatError` naming ``where``: a polygon of fewer than 3 points, a
    coordinate outside the image, an RLE whose size disagrees with the image, neither form."""
    if isinstance(seg, dict):
        rle_size, counts = seg.get("size"), seg.get("counts")
        if not (isinstance(rle_size, (list, tuple)) and len(rle_size) == 2) or counts is None:
            raise DatasetFormatError(f"{where}: an RLE segmentation needs 'size' [H, W] and 'counts'")
        if size is not None and (int(rle_size[0]), int(rle_size[1])) != tuple(size):
            raise DatasetFormatError(
                f"{where}: RLE size {list(rle_size)} (H, W) disagrees with the image's {list(size)}; the mask "
                "belongs to another image or the image's height/width are wrong"
            )
        return seg
    if not isinstance(seg, (list, tuple)) or not seg:
        raise DatasetFormatError(f"{where}: segmentation must be a list of polygons or an RLE dict, got {seg!r:.80}")
    polys = [list(seg)] if all(isinstance(v, (int, float)) for v in seg) else [list(p) for p in seg]
    for poly in polys:
        if len(poly) < 6 or len(poly) % 2:
            raise DatasetFormatError(
                f"{where}: a polygon needs at least 3 points (x y pairs), got {len(poly)} values"
            )
        arr = np.asarray(poly, np.float64)
        if not np.isfinite(arr).all():
            raise DatasetFormatError(f"{where}: polygon has a NaN or infinite coordinate")
        if size is not None:
            h, w = size
            xs, ys = arr[0::2], arr[1::2]
            if (arr < -EDGE_TOLERANCE).any() or (xs > w + EDGE_TOLERANCE).any() or (ys > h + EDGE_TOLERANCE).any():
                raise DatasetFormatError(
                    f"{where}: polygon point outside the {w}x{h} image (x {xs.min():g}..{xs.max():g}, "
                    f"y {ys.min():g}..{ys.max():g}); polygons are in pixels of the image"
                )
    return polys


def decode_masks(segs: list[Segmentation], size: tuple[int, int]) -> np.ndarray:
    """``uint8 [K, H, W]`` (0/1) masks of ``segs`` on an image of ``size`` = (H, W)."""
    from pycocotools import mask as mask_utils

    h, w = size
    out = np.zeros((len(segs), h, w), np.uint8)
    for k, seg in enumerate(segs):
        if isinstance(seg, dict):
            rle = seg if not isinstance(seg["counts"], list) else mask_utils.frPyObjects(seg, h, w)
        else:
            rle = mask_utils.merge(mask_utils.frPyObjects([list(map(float, p)) for p in seg], h, w))
        out[k] = mask_utils.decode(rle)
    return out


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """COCO's compressed RLE of one binary mask ``[H, W]`` (``counts`` as a str, JSON-ready)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}
