"""A CIFAR-like synthetic classification set with real signal, generated in memory (no download).

Ten classes of shape (disk, ring, square, hollow square, plus, bar, diamond, triangle, two dots,
half disk), each drawn at a random position, size and rotation, in a random colour contrasting with
its random colour gradient background, with a small distractor disk of another colour and Gaussian pixel noise. The
class is only in the spatial structure (colour, position, size and orientation carry none), so a
network has to learn shape filters; torchvision's FakeData, by contrast, is noise with random labels.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

N_CLASSES = 10


def _masks(u: Tensor, v: Tensor, r: Tensor) -> Tensor:
    """``[10, N, H, W]`` boolean masks of the ten shapes in the shape frame ``u, v`` (pixels), radius ``r``."""
    d = torch.sqrt(u**2 + v**2)
    box = torch.maximum(u.abs(), v.abs())
    return torch.stack([
        d < r,  # disk
        (d < r) & (d > 0.55 * r),  # ring
        box < 0.85 * r,  # square
        (box < 0.9 * r) & (box > 0.5 * r),  # hollow square
        ((u.abs() < 0.3 * r) & (v.abs() < r)) | ((v.abs() < 0.3 * r) & (u.abs() < r)),  # plus
        (u.abs() < 1.1 * r) & (v.abs() < 0.3 * r),  # bar
        u.abs() + v.abs() < 1.1 * r,  # diamond
        (v < 0.5 * r) & (v > 1.7 * u - r) & (v > -1.7 * u - r),  # triangle
        ((u - 0.55 * r) ** 2 + v**2 < (0.4 * r) ** 2) | ((u + 0.55 * r) ** 2 + v**2 < (0.4 * r) ** 2),  # two dots
        (d < r) & (u > 0),  # half disk
    ])


def make_shapes(n: int, size: int = 32, seed: int = 0, noise: float = 0.2) -> tuple[Tensor, Tensor]:
    """``n`` images ``[n, 3, size, size]`` (float32, about zero mean, unit scale) and labels ``[n]``
    (int64, balanced, shuffled), reproducible from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % N_CLASSES
    labels = labels[torch.randperm(n, generator=g)]

    def rand(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=g)

    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    r = (0.18 + 0.14 * rand(n)) * size  # radius: 18% to 32% of the side
    cx, cy = [(0.3 + 0.4 * rand(n)) * size for _ in range(2)]
    theta = 2 * math.pi * rand(n)
    dx, dy = xs - cx[:, None, None], ys - cy[:, None, None]
    cos, sin = theta.cos()[:, None, None], theta.sin()[:, None, None]
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    mask = _masks(u, v, r[:, None, None])[labels, torch.arange(n)].float()  # [n, H, W]

    # background: a random linear colour gradient; shape and distractor: random colours
    direction = 2 * math.pi * rand(n)
    ramp = (xs * direction.cos()[:, None, None] + ys * direction.sin()[:, None, None]) / size
    # contrast is guaranteed (a dark shape on a light ground or the reverse, chosen at random, so
    # brightness carries no class either); without it a shape can vanish into its background
    dark, light = 0.4 * rand(n, 3, 1, 1), 0.6 + 0.4 * rand(n, 3, 1, 1)
    flip = (rand(n, 1, 1, 1) < 0.5).float()
    bg = flip * dark + (1 - flip) * light + 0.3 * (rand(n, 3, 1, 1) - 0.5) * ramp[:, None]
    fg = flip * light + (1 - flip) * dark
    img = bg * (1 - mask[:, None]) + fg * mask[:, None]
    dr = (0.06 + 0.05 * rand(n)) * size
    ex, ey = [rand(n) * size for _ in range(2)]
    dot = (((xs - ex[:, None, None]) ** 2 + (ys - ey[:, None, None]) ** 2) < dr[:, None, None] ** 2).float()
    img = img * (1 - dot[:, None]) + rand(n, 3, 1, 1) * dot[:, None]
    img = img + noise * torch.randn(img.shape, generator=g)
    return ((img - 0.5) / 0.4).float(), labels
