"""Drawing synthetic scenes: coloured shapes of several classes and sizes on textured backgrounds.

One renderer feeds every task's synthetic data (classification crops, segmentation masks, detection
boxes); the writers in each datamodule family save its output in the real file formats, so the real
readers run in tests and demos. Class ``k`` is a shape kind; colours vary within a class so a model
must learn shape, not only colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from visiontasks.errors import InvalidInputError

SHAPE_NAMES = ("circle", "square", "triangle", "diamond", "cross", "ring")


@dataclass
class ShapeInstance:
    """One object: its class index, its full-image boolean mask, and its box (xyxy, pixels)."""

    label: int
    mask: np.ndarray
    box: tuple[float, float, float, float]


def textured_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """``uint8 [H, W, 3]``: a colour gradient, stripes and pixel noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 200, size=3)
    gx, gy = rng.uniform(-60, 60, size=(2, 3))
    img = base + gx * xx[..., None] / max(width, 1) + gy * yy[..., None] / max(height, 1)
    period = rng.uniform(6, 20)
    angle = rng.uniform(0, np.pi)
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    img += stripes[..., None] * rng.uniform(5, 20)
    img += rng.normal(0, 8, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _polygon(kind: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    if kind == "triangle":
        return [(cx, cy - r), (cx - r * 0.95, cy + r * 0.8), (cx + r * 0.95, cy + r * 0.8)]
    if kind == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    if kind == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    return None


def draw_shape(kind: str, height: int, width: int, cx: float, cy: float, r: float) -> np.ndarray:
    """Boolean mask ``[H, W]`` of one shape of radius ``r`` pixels centred at (cx, cy)."""
    canvas = Image.new("L", (width, height), 0)
    d = ImageDraw.Draw(canvas)
    poly = _polygon(kind, cx, cy, r)
    if poly is not None:
        d.polygon(poly, fill=1)
    elif kind == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    elif kind == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
        d.ellipse([cx - r * 0.5, cy - r * 0.5, cx + r * 0.5, cy + r * 0.5], fill=0)
    elif kind == "cross":
        t = r * 0.35
        d.rectangle([cx - r, cy - t, cx + r, cy + t], fill=1)
        d.rectangle([cx - t, cy - r, cx + t, cy + r], fill=1)
    else:
        raise InvalidInputError(f"unknown shape {kind!r}; known: {SHAPE_NAMES}")
    return np.asarray(canvas, dtype=bool)


def render_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    num_classes: int,
    max_objects: int = 4,
    min_objects: int = 1,
    size_range: tuple[float, float] = (0.08, 0.25),
    max_overlap: float = 0.3,
) -> tuple[np.ndarray, list[ShapeInstance]]:
    """Draw up to ``max_objects`` shapes of classes ``0..num_classes-1`` on a textured background.

    ``size_range`` is the shape radius as a fraction of the shorter side. Shapes covering more than
    ``max_overlap`` of an earlier shape are not placed. Later shapes are drawn on top; each instance's
    mask is what remains visible. Returns ``(uint8 [H, W, 3], instances)``.
    """
    if not 1 <= num_classes <= len(SHAPE_NAMES):
        raise InvalidInputError(f"num_classes must be in [1, {len(SHAPE_NAMES)}], got {num_classes}")
    image = textured_background(rng, height, width)
    placed: list[tuple[int, np.ndarray]] = []
    side = min(height, width)
    n = int(rng.integers(min_objects, max_objects + 1))
    for _ in range(n * 5):
        if len(placed) >= n:
            break
        label = int(rng.integers(num_classes))
        r = rng.uniform(*size_range) * side
        cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
        mask = draw_shape(SHAPE_NAMES[label], height, width, cx, cy, r)
        if not mask.any() or any((mask & m).sum() > max_overlap * m.sum() for _, m in placed):
            continue
        placed.append((label, mask))
        colour = rng.uniform(0, 255, size=3)
        # keep the object distinguishable from the background around it
        if np.abs(colour - image[mask].mean(axis=0)).sum() < 120:
            colour = 255 - image[mask].mean(axis=0)
        image[mask] = np.clip(colour + rng.normal(0, 6, size=(int(mask.sum()), 3)), 0, 255).astype(np.uint8)
    instances = []
    covered = np.zeros((height, width), dtype=bool)
    for label, mask in reversed(placed):
        visible = mask & ~covered
        covered |= mask
        if visible.sum() < 4:
            continue
        ys, xs = np.nonzero(visible)
        box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        instances.append(ShapeInstance(label, visible, box))
    instances.reverse()
    return image, instances


# -- shapes whose corners are keypoints ------------------------------------------------------------------
# Every shape of a set has the same number of corners P; the corners are named by where they are, and the
# random rotation is at most max_rotation (30 degrees by default, < 45), so the name of each corner stays
# what its place says (the top-left corner of a square turned by 30 degrees is still the upper-left
# one). A horizontal flip mirrors a shape into one of the same class turned the other way: its top-left
# corner becomes the top-right one, hence the flip pairs.
KEYPOINT_SHAPES: dict[int, tuple[str, ...]] = {4: ("square", "rectangle", "trapezoid"),
                                               3: ("triangle", "right_triangle")}
CORNER_NAMES: dict[int, list[str]] = {4: ["top_left", "top_right", "bottom_right", "bottom_left"],
                                      3: ["top", "bottom_right", "bottom_left"]}
CORNER_FLIP: dict[int, list[int]] = {4: [1, 0, 3, 2], 3: [0, 2, 1]}


def corner_skeleton(num_corners: int) -> list[tuple[int, int]]:
    """The polygon's edges: corner ``i`` to ``i + 1``, the last back to the first."""
    return [(i, (i + 1) % num_corners) for i in range(num_corners)]


def _corners(kind: str, rng: np.random.Generator) -> np.ndarray:
    """float ``[P, 2]`` corners of an upright shape of radius ~1 around (0, 0), in the order of
    :data:`CORNER_NAMES` (y points down)."""
    if kind == "square":
        return np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)]) * 0.75
    if kind == "rectangle":
        a = rng.uniform(1.6, 2.2)  # wide: width / height
        return np.array([(-1, -1 / a), (1, -1 / a), (1, 1 / a), (-1, 1 / a)]) * 0.95
    if kind == "trapezoid":
        return np.array([(-0.45, -0.7), (0.45, -0.7), (1.0, 0.7), (-1.0, 0.7)])
    if kind == "triangle":  # isosceles, a narrow apex up (no turn of 30 degrees maps it onto itself)
        return np.array([(0.0, -1.0), (0.6, 0.8), (-0.6, 0.8)])
    if kind == "right_triangle":  # the right angle at the bottom left or (mirrored) bottom right
        side = rng.choice([-1.0, 1.0])
        return np.array([(-0.8 * side, -1.0), (0.8, 0.8), (-0.8, 0.8)])
    raise InvalidInputError(f"unknown keypoint shape {kind!r}; known: {KEYPOINT_SHAPES}")


@dataclass
class CornerInstance:
    """One shape: its class index, box (xyxy pixels, the tight box of its pixels) and corners float
    ``[P, 2]`` (pixel-edge coordinates, as the box)."""

    label: int
    box: tuple[float, float, float, float]
    corners: np.ndarray


def render_corner_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    num_corners: int,
    num_classes: int,
    max_objects: int = 3,
    min_objects: int = 1,
    size_range: tuple[float, float] = (0.15, 0.3),
    max_rotation: float = 30.0,
) -> tuple[np.ndarray, list[CornerInstance]]:
    """Draw up to ``max_objects`` non-overlapping polygons of ``num_corners`` corners (classes
    ``KEYPOINT_SHAPES[num_corners][:num_classes]``), each scaled to a radius of ``size_range`` times the
    shorter side and turned by up to ``max_rotation`` degrees, on a textured background. Every corner
    lies in the image and is visible. Returns ``(uint8 [H, W, 3], instances)``."""
    kinds = KEYPOINT_SHAPES[num_corners][:num_classes]
    image = textured_background(rng, height, width)
    taken = np.zeros((height, width), bool)
    side = min(height, width)
    out: list[CornerInstance] = []
    n = int(rng.integers(min_objects, max_objects + 1))
    for _ in range(n * 10):
        if len(out) >= n:
            break
        label = int(rng.integers(len(kinds)))
        r = rng.uniform(*size_range) * side
        t = np.deg2rad(rng.uniform(-max_rotation, max_rotation))
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        shape = _corners(kinds[label], rng) @ rot.T * r
        lo, hi = shape.min(axis=0), shape.max(axis=0)
        if (hi - lo > [width - 2, height - 2]).any():
            continue
        centre = rng.uniform(1 - lo, [width - 1, height - 1] - hi)
        corners = shape + centre
        canvas = Image.new("L", (width, height), 0)
        # PIL fills the pixels whose centres (i + 0.5) the polygon covers: vertices in pixel-index frame
        ImageDraw.Draw(canvas).polygon([(float(x) - 0.5, float(y) - 0.5) for x, y in corners], fill=1)
        mask = np.asarray(canvas, bool)
        grown = mask | np.roll(mask, 1, 0) | np.roll(mask, -1, 0) | np.roll(mask, 1, 1) | np.roll(mask, -1, 1)
        if mask.sum() < 4 or (grown & taken).any():
            continue
        taken |= grown
        colour = rng.uniform(0, 255, size=3)
        if np.abs(colour - image[mask].mean(axis=0)).sum() < 120:
            colour = 255 - image[mask].mean(axis=0)
        image[mask] = np.clip(colour + rng.normal(0, 6, size=(int(mask.sum()), 3)), 0, 255).astype(np.uint8)
        ys, xs = np.nonzero(mask)  # the box holds the pixels and the (sharp, maybe unfilled) corners
        (cx0, cy0), (cx1, cy1) = corners.min(axis=0), corners.max(axis=0)
        box = (float(min(xs.min(), cx0)), float(min(ys.min(), cy0)), float(max(xs.max() + 1, cx1)),
               float(max(ys.max() + 1, cy1)))
        out.append(CornerInstance(label, box, corners.astype(np.float32)))
    return image, out
