"""The albumentations ops of a :class:`~visiontasks.preprocessing.Preprocessing`'s resize (imported
only when a pipeline is built: the package itself is plain data)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import albumentations as A
import cv2
from albumentations.augmentations.geometric.resize import MaxSizeTransform

if TYPE_CHECKING:
    from visiontasks.preprocessing import Preprocessing


class ShortestEdgeResize(MaxSizeTransform):
    """Scale (aspect kept) so the shorter side is ``min_size``, unless the longer side would then
    exceed ``max_size`` (e.g. 800 / 1333 as torchvision's Faster R-CNN). Boxes follow (albumentations
    keeps them normalised, so only the scale is computed here)."""

    def __init__(self, min_size: int, max_size: int, p: float = 1.0) -> None:
        super().__init__(max_size=max_size, p=p)
        self.min_size, self.max_side = int(min_size), int(max_size)

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict:
        h, w = params["shape"][:2]
        return {"scale": min(self.min_size / min(h, w), self.max_side / max(h, w))}


def mean_fill(prep: "Preprocessing") -> tuple[int, ...]:
    """The mean colour in 0..255 (0 after normalising): what padding is filled with."""
    return tuple(int(round(m * 255)) for m in prep.mean)


def resize_ops(prep: "Preprocessing") -> list[A.BasicTransform]:
    """``stretch``: ``Resize``; ``letterbox``: ``LongestMaxSize`` + centred ``PadIfNeeded`` with
    :func:`mean_fill`; ``shortest_edge``: :class:`ShortestEdgeResize`; ``none``: nothing."""
    if prep.resize == "none" or prep.image_size is None:
        return []
    h, w = prep.image_size
    if prep.resize == "shortest_edge":
        return [ShortestEdgeResize(h, w)]
    if prep.resize == "letterbox":
        return [
            A.LongestMaxSize(max_size_hw=(h, w)),
            A.PadIfNeeded(min_height=h, min_width=w, position="center",
                          border_mode=cv2.BORDER_CONSTANT, fill=mean_fill(prep)),
        ]
    return [A.Resize(h, w)]
