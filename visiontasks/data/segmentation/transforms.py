"""albumentations pipelines for segmentation: the mask moves with the image.

Geometric steps resize masks with nearest-neighbour (class ids are never blended) and pad masks
with the ignore index, so padded pixels count neither in the loss nor in the metrics.
"""

from __future__ import annotations

from typing import Sequence

import albumentations as A
import cv2

from visiontasks.errors import InvalidInputError
from visiontasks.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, pair


def segmentation_train_transforms(
    crop_size: int | Sequence[int] | None = 256,
    scale_range: Sequence[float] = (0.5, 2.0),
    hflip: bool = True,
    color_jitter: float = 0.0,
    ignore_index: int = 255,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> A.Compose:
    """Random scale in ``scale_range`` -> pad to ``crop_size`` (image: the mean colour, mask:
    ``ignore_index``) -> random crop -> horizontal flip -> colour jitter (strength ``color_jitter``,
    0 = off) -> normalise. ``crop_size=None`` keeps the scaled image whole."""
    lo, hi = float(scale_range[0]), float(scale_range[1])
    if not 0 < lo <= hi:
        raise InvalidInputError(f"scale_range must be 0 < lo <= hi, got {scale_range}")
    steps: list[A.BasicTransform] = []
    if (lo, hi) != (1.0, 1.0):
        steps.append(
            A.RandomScale(
                scale_limit=(lo - 1.0, hi - 1.0),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                p=1.0,
            )
        )
    if crop_size is not None:
        h, w = pair(crop_size)
        fill = tuple(255.0 * m for m in mean) if len(mean) == 3 else 255.0 * mean[0]
        steps += [
            A.PadIfNeeded(h, w, border_mode=cv2.BORDER_CONSTANT, fill=fill, fill_mask=ignore_index),
            A.RandomCrop(h, w),
        ]
    if hflip:
        steps.append(A.HorizontalFlip(p=0.5))
    if color_jitter > 0:
        j = float(color_jitter)
        steps.append(A.ColorJitter(brightness=j, contrast=j, saturation=j, hue=min(j / 4, 0.5), p=0.8))
    steps.append(A.Normalize(mean=tuple(mean), std=tuple(std)))
    return A.Compose(steps)


def segmentation_eval_transforms(
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> A.Compose:
    """Normalise only: evaluation and prediction run at each image's own resolution."""
    return A.Compose([A.Normalize(mean=tuple(mean), std=tuple(std))])


def eval_transform(prep: Preprocessing) -> A.Compose:
    """The evaluation pipeline of :class:`SegmentationDataModule` (each image at its own size,
    normalised) from a checkpoint's :class:`~visiontasks.preprocessing.Preprocessing`."""
    if prep.resize != "none":
        raise ValueError(f"segmentation evaluation runs at each image's own size; got resize={prep.resize!r}")
    return segmentation_eval_transforms(prep.mean, prep.std)
