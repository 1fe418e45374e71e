"""The in-memory classification path: a split held as ONE ``uint8 [N, H, W, C]`` array, batches cut
from it by indexing, and the augmentation and normalisation applied to the whole batch at once.

This is the loop a PyTorch user writes for MNIST or CIFAR: no per-sample Python, no loader
workers, no collate of many small tensors. :class:`ClassificationDataModule` takes it whenever the
split's images sit in memory (an in-memory source, or ``cache: ram``/``disk``, which ``cache: auto``
picks when the data fits) and the augmentation is ``none`` or ``light``; ``standard`` (random
resized crops of larger photos) keeps the per-sample albumentations path.

The batch ops reproduce :func:`~visiontasks.data.classification.transforms.classification_transforms`
(albumentations 2.x) in distribution, written with ``F.affine_grid``/``F.grid_sample`` because no
maintained library applies albumentations' parameter sampling to a batch tensor (kornia would be a
new dependency for two ops):

- ``light``: with p=0.7 ``A.Affine(scale=(0.9, 1.1), translate_percent=(-0.08, 0.08),
  rotate=(-10, 10))`` (x and y scale and shift drawn independently, the shift truncated to whole
  pixels, rotation about the pixel centre, bilinear, zero border), then with p=0.5
  ``A.RandomBrightnessContrast(0.15, 0.15)`` (``x * alpha + beta * 255``, clipped to 0..255);
- always ``A.Normalize`` (``(x / 255 - mean) / std``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

BATCHED_AUGMENTS = ("none", "light")

# the ``light`` preset's parameters (kept equal to transforms.classification_transforms)
AFFINE_P, SCALE, TRANSLATE, ROTATE_DEG = 0.7, (0.9, 1.1), 0.08, 10.0
COLOUR_P, BRIGHTNESS, CONTRAST = 0.5, 0.15, 0.15


class InMemoryImages(Dataset):
    """A split as one array: ``images uint8 [N, H, W, C]`` (in memory or a read-only memmap),
    ``labels int64 [N]``, ``ids`` (one str each).

    ``__getitems__`` (what a ``DataLoader`` with a batch sampler calls) returns a whole batch,
    ``{"image": uint8 [B, C, H, W], "label": int64 [B], "id": list[str]}``; a
    :class:`BatchPreparer` as the loader's ``collate_fn`` augments and normalises it.
    ``__getitem__`` gives one such sample (``image uint8 [C, H, W]``) for code that indexes the
    dataset directly."""

    def __init__(self, images: np.ndarray, labels: Sequence[int], ids: Sequence[str]) -> None:
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}")
        self.images, self.labels, self.ids = images, torch.as_tensor(np.asarray(labels, np.int64)), list(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Any]:
        idx = np.asarray(indices, np.int64)
        images = torch.from_numpy(np.ascontiguousarray(self.images[idx])).permute(0, 3, 1, 2).contiguous()
        return {"image": images, "label": self.labels[idx], "id": [self.ids[i] for i in idx]}

    def __getitem__(self, i: int) -> dict[str, Any]:
        batch = self.__getitems__([i])
        return {"image": batch["image"][0], "label": int(batch["label"][0]), "id": batch["id"][0]}


class BatchPreparer:
    """The ``collate_fn`` of an :class:`InMemoryImages` loader: the batch is already whole; its
    ``uint8`` images become the normalised ``float32 [B, C, H, W]`` the per-sample path gives, with
    ``augment`` (``none`` or ``light``) drawn per sample. It runs where the loader collates (the
    loader's workers, or the training process without any), so every loader of the datamodule yields
    model-ready batches, in a Trainer or in a user's own loop."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], augment: str = "none") -> None:
        if augment not in BATCHED_AUGMENTS:
            raise ValueError(f"batch augmentation knows {BATCHED_AUGMENTS}, not {augment!r}")
        self.mean, self.std, self.augment = tuple(mean), tuple(std), augment

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {**batch, "image": prepare_batch(batch["image"], self.mean, self.std, self.augment)}


def light_affine_theta(n: int, height: int, width: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``float32 [n, 2, 3]`` ``affine_grid`` matrices (output -> input, normalised coordinates,
    ``align_corners=False``) of albumentations' ``Affine`` with the ``light`` parameters, drawn
    per sample; the samples not picked (1 - p) get the identity.

    albumentations maps an input pixel ``p`` (integer pixel centres) to ``c + t + R S (p - c)`` with
    ``c = (W/2 - 0.5, H/2 - 0.5)``, ``R = [[cos, sin], [-sin, cos]]``, ``S = diag(sx, sy)`` and ``t``
    whole pixels; with ``p = D u + c`` (``D = diag(W/2, H/2)``, ``u`` normalised), the sampling
    matrix is ``u = D^-1 (RS)^-1 D u' - D^-1 (RS)^-1 t``."""
    g = generator
    sx = torch.empty(n).uniform_(*SCALE, generator=g)
    sy = torch.empty(n).uniform_(*SCALE, generator=g)
    tx = torch.trunc(torch.empty(n).uniform_(-TRANSLATE, TRANSLATE, generator=g) * width)
    ty = torch.trunc(torch.empty(n).uniform_(-TRANSLATE, TRANSLATE, generator=g) * height)
    angle = torch.deg2rad(torch.empty(n).uniform_(-ROTATE_DEG, ROTATE_DEG, generator=g))
    picked = torch.rand(n, generator=g) < AFFINE_P
    cos, sin = torch.cos(angle), torch.sin(angle)
    # (R S)^-1 = S^-1 R^-1 with R^-1 = [[cos, -sin], [sin, cos]]
    inv = torch.stack([torch.stack([cos / sx, -sin / sx], -1), torch.stack([sin / sy, cos / sy], -1)], -2)
    d = torch.tensor([width / 2.0, height / 2.0])
    a = inv * d[None, None, :] / d[None, :, None]  # D^-1 M D
    b = -(inv @ torch.stack([tx, ty], -1)[..., None])[..., 0] / d
    theta = torch.cat([a, b[..., None]], -1)
    identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(n, 2, 3)
    return torch.where(picked[:, None, None], theta, identity)


def light_colour(n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ``(alpha, beta)`` of ``RandomBrightnessContrast(0.15, 0.15, p=0.5)``
    (``out = x * alpha + beta * 255``; 1 and 0 for the samples not picked), ``float32 [n]`` each."""
    g = generator
    alpha = 1.0 + torch.empty(n).uniform_(-CONTRAST, CONTRAST, generator=g)
    beta = torch.empty(n).uniform_(-BRIGHTNESS, BRIGHTNESS, generator=g)
    picked = torch.rand(n, generator=g) < COLOUR_P
    return torch.where(picked, alpha, torch.ones(n)), torch.where(picked, beta, torch.zeros(n))


def prepare_batch(
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    augment: str = "none",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``uint8 [B, C, H, W]`` -> normalised ``float32 [B, C, H, W]`` on the same device, with the
    ``augment`` preset (``none`` or ``light``) drawn per sample (``generator``: CPU, for tests)."""
    if augment not in BATCHED_AUGMENTS:
        raise ValueError(f"batch augmentation knows {BATCHED_AUGMENTS}, not {augment!r}")
    x = images.float()
    if augment == "light":
        n, _, h, w = x.shape
        theta = light_affine_theta(n, h, w, generator).to(x.device)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        x = x.round()  # albumentations warps uint8 images: whole levels before the colour step
        alpha, beta = (t.to(x.device)[:, None, None, None] for t in light_colour(n, generator))
        x = (x * alpha + beta * 255.0).clamp_(0.0, 255.0)
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1) * 255.0
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1) * 255.0
    return (x - m) / s


__all__ = ["BATCHED_AUGMENTS", "BatchPreparer", "InMemoryImages", "light_affine_theta", "light_colour", "prepare_batch"]
