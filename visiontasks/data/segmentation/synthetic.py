"""A synthetic segmentation set written to disk in the image + index-mask folder layout.

Scenes come from the shared renderer (:func:`visiontasks.data.shapes.render_scene`): shapes of
several kinds on textured backgrounds. Class 0 is the background, class ``k >= 1`` the shape kind
``SHAPE_NAMES[k - 1]``. Files: ``root/images/<split>/<n>.png`` and ``root/masks/<split>/<n>.png``
(palette PNGs whose pixel values are the class indices), plus ``root/synthetic.json`` recording the
settings; an existing set with the same settings is reused, so the real folder reader always runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from visiontasks.errors import InvalidInputError
from visiontasks.preprocessing import pair

from ..shapes import SHAPE_NAMES, render_scene
from ..synthetic import STAMP, build_synthetic  # noqa: F401  (STAMP: this module's earlier API)
from .masks import save_index_mask

SPLITS = ("train", "val", "test")


def synthetic_class_names(num_shapes: int) -> list[str]:
    """``["background", <shape 1>, ...]``: ``num_shapes + 1`` names."""
    if not 1 <= num_shapes <= len(SHAPE_NAMES):
        raise InvalidInputError(f"num_shapes must be in [1, {len(SHAPE_NAMES)}], got {num_shapes}")
    return ["background", *SHAPE_NAMES[:num_shapes]]


def write_synthetic_segmentation(
    root: str | Path,
    counts: Sequence[int] = (300, 100, 100),
    image_size: int | Sequence[int] = 128,
    num_shapes: int = 6,
    max_objects: int = 3,
    size_range: Sequence[float] = (0.15, 0.35),
    seed: int = 0,
) -> Path:
    """Write (or reuse) ``counts = (train, val, test)`` scenes of ``image_size`` under ``root``.

    Each split draws from its own seeded stream, so val/test are held out from train. The set is
    built in a temporary sibling folder and renamed into place, so an interrupted run never leaves a
    half-written set behind. A ``root`` holding other files (no stamp) is never overwritten.
    """
    root = Path(root)
    h, w = pair(image_size)
    if len(counts) != 3 or min(counts) < 0:
        raise InvalidInputError(f"counts must be three non-negative numbers (train, val, test), got {counts}")
    settings = {
        "counts": [int(c) for c in counts],
        "image_size": [h, w],
        "num_shapes": int(num_shapes),
        "max_objects": int(max_objects),
        "size_range": [float(s) for s in size_range],
        "seed": int(seed),
        "class_names": synthetic_class_names(num_shapes),
    }

    def write(folder: Path) -> None:
        for split_index, (split, n) in enumerate(zip(SPLITS, counts)):
            rng = np.random.default_rng([seed, split_index])
            (folder / "images" / split).mkdir(parents=True)
            (folder / "masks" / split).mkdir(parents=True)
            for i in range(int(n)):
                image, instances = render_scene(
                    rng, h, w, num_shapes, max_objects=max_objects, size_range=tuple(size_range)
                )
                mask = np.zeros((h, w), dtype=np.uint8)
                for inst in instances:
                    mask[inst.mask] = inst.label + 1
                Image.fromarray(image).save(folder / "images" / split / f"{i:05d}.png")
                save_index_mask(folder / "masks" / split / f"{i:05d}.png", mask)

    return build_synthetic(root, settings, write)
