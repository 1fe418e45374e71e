"""A synthetic classification set: one centred shape per image, written as an ImageFolder.

Class = shape kind; files ``root/<shape>/<n>.png``. The set follows the shared convention of
:mod:`visiontasks.data.synthetic` (stamp with the settings; reused, rebuilt or refused).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from visiontasks.errors import InvalidInputError

from ..shapes import SHAPE_NAMES, render_scene
from ..synthetic import build_synthetic


def synthetic_class_names(num_classes: int) -> list[str]:
    """The folder (= class) names of a set with ``num_classes`` shapes, in ImageFolder (sorted) order."""
    if not 1 <= num_classes <= len(SHAPE_NAMES):
        raise InvalidInputError(f"num_classes must be in [1, {len(SHAPE_NAMES)}], got {num_classes}")
    return sorted(SHAPE_NAMES[:num_classes])


def write_synthetic_image_folder(root: Path, num_classes: int, per_class: int, size: int, seed: int) -> Path:
    """Write (or reuse) ``per_class`` images of side ``size`` for each of ``num_classes`` shapes."""
    synthetic_class_names(num_classes)  # checks the count
    settings = {"num_classes": num_classes, "per_class": per_class, "size": size, "seed": seed}

    def write(folder: Path) -> None:
        rng = np.random.default_rng(seed)
        for label in range(num_classes):
            out = folder / SHAPE_NAMES[label]
            out.mkdir(parents=True, exist_ok=True)
            made = 0
            while made < per_class:
                image, instances = render_scene(rng, size, size, num_classes, max_objects=1, size_range=(0.2, 0.4))
                if not instances or instances[0].label != label:
                    continue
                Image.fromarray(image).save(out / f"{made:05d}.png")
                made += 1

    return build_synthetic(root, settings, write)
