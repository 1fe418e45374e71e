"""albumentations presets for classification: train augmentation, eval resize + normalise."""

from __future__ import annotations

from typing import Literal, Sequence

import albumentations as A
from albumentations.pytorch import ToTensorV2

from visiontasks.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

Augment = Literal["none", "light", "standard"]


def default_mean_std(in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """ImageNet statistics for RGB; 0.5/0.5 (i.e. [-1, 1]) for one channel."""
    return (IMAGENET_MEAN, IMAGENET_STD) if in_chans == 3 else ((0.5,), (0.5,))


def largest_zoom(augment: Augment) -> float:
    """How much the training augmentation can enlarge the resized image (what a cache must keep):
    ``light``'s affine scale 1.1; ``standard``'s smallest random crop (area 0.35, aspect 3/4)
    covers about 0.51 of a side, stretched back to the full size."""
    return {"none": 1.0, "light": 1.1, "standard": 1.0 / (0.35 * 0.75) ** 0.5}[augment]


def classification_transforms(
    image_size: tuple[int, int],
    train: bool,
    augment: Augment,
    mean: Sequence[float],
    std: Sequence[float],
    in_chans: int = 3,
) -> A.Compose:
    """``uint8 [H, W, C]`` -> ``float32 [C, h, w]`` with ``(h, w) = image_size``.

    ``none``: resize only. ``light``: small shifts, scales and rotations plus brightness/contrast
    (no flips: right for digits and text). ``standard``: ImageNet-style random resized crop,
    horizontal flip and colour jitter.
    """
    h, w = image_size
    ops: list[A.BasicTransform] = []
    if train and augment == "standard":
        ops += [
            A.RandomResizedCrop(size=(h, w), scale=(0.35, 1.0)),
            A.HorizontalFlip(p=0.5),
        ]
        if in_chans == 3:
            ops.append(A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.8))
        else:
            ops.append(A.RandomBrightnessContrast(0.2, 0.2, p=0.8))
    else:
        ops += Preprocessing("stretch", (h, w)).resize_ops()  # the resize only: its mean/std are unused
        if train and augment == "light":
            ops += [
                A.Affine(scale=(0.9, 1.1), translate_percent=(-0.08, 0.08), rotate=(-10, 10), p=0.7),
                A.RandomBrightnessContrast(0.15, 0.15, p=0.5),
            ]
    ops += [A.Normalize(mean=tuple(mean), std=tuple(std)), ToTensorV2()]
    return A.Compose(ops)


def eval_transform(prep: Preprocessing) -> A.Compose:
    """The evaluation pipeline of :class:`ClassificationDataModule` (stretch to ``image_size``,
    normalise) from a checkpoint's :class:`~visiontasks.preprocessing.Preprocessing`."""
    if prep.resize != "stretch" or prep.image_size is None:
        raise ValueError(f"classification evaluation stretches to image_size; got resize={prep.resize!r}")
    return classification_transforms(prep.image_size, False, "none", prep.mean, prep.std, prep.in_chans)
