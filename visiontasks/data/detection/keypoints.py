"""Keypoints of detection records: what a data set declares about them, and the checks of the points.

A data set with keypoints gives every object the same ``P`` points, ``(x, y, v)`` as COCO: ``v = 0``
not labelled (then ``x = y = 0``), ``1`` labelled but not visible, ``2`` visible. ``x, y`` are in the
boxes' pixel frame (continuous coordinates, pixel edges: a horizontal flip maps ``x`` to ``W - x``, as
it maps a box's ``x1`` to ``W - x2``). Records keep them as float32 ``[K, P, 3]`` in file pixels.

:class:`KeypointSpec` is what the data set declares (read with the class table, no annotations):
names, skeleton (0-based pairs), ``flip_idx`` (Ultralytics' convention: after a horizontal flip,
point ``i`` is the old point ``flip_idx[i]``) and OKS sigmas.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .common import DatasetFormatError

# COCO's per-keypoint OKS sigmas of the 17 person keypoints (cocoeval.py). A temporary copy of the data
# side: after the keypoint model is merged, visiontasks.ops.keypoints.COCO_PERSON_SIGMAS is the one.
COCO_PERSON_SIGMAS = [0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
                      0.107, 0.107, 0.087, 0.087, 0.089, 0.089]

# a labelled point may lie on the far edge (x = W) and a pixel beyond by rounding (as polygon points,
# masks.EDGE_TOLERANCE); YOLO's normalised points allow 1e-6 beyond [0, 1] as its boxes do
EDGE_TOLERANCE = 1.0

_SIDE = re.compile(r"(?<![a-z])(left|right)(?![a-z])", re.IGNORECASE)


@dataclass
class KeypointSpec:
    """What a data set declares about its keypoints; ``source`` is the file it was read from (named
    in errors)."""

    names: list[str]
    skeleton: list[tuple[int, int]]
    flip_idx: list[int] | None
    sigmas: list[float] | None  # declared ones only (not standard in COCO nor YOLO, accepted if present)
    source: str

    @property
    def num_keypoints(self) -> int:
        return len(self.names)

    def oks_sigmas(self) -> list[float]:
        """The declared sigmas, else COCO's person sigmas when ``P == 17``, else ``[1 / P] * P``
        (Ultralytics' rule)."""
        p = self.num_keypoints
        if self.sigmas is not None:
            return list(self.sigmas)
        return list(COCO_PERSON_SIGMAS) if p == 17 else [1.0 / p] * p

    def has_sides(self) -> bool:
        """Whether a flip must swap points: a skeleton is declared, or a name says left/right."""
        return bool(self.skeleton) or any(_SIDE.search(n) for n in self.names)


def flip_idx_from_names(names: Sequence[str]) -> list[int] | None:
    """Mirror pairs from the names (``left_eye`` <-> ``right_eye``, ``top_left`` <-> ``top_right``);
    ``None`` when no name says left/right or one has no counterpart."""
    if not any(_SIDE.search(n) for n in names):
        return None
    index = {n: i for i, n in enumerate(names)}
    swap = {"left": "right", "right": "left", "LEFT": "RIGHT", "RIGHT": "LEFT", "Left": "Right", "Right": "Left"}
    out = []
    for n in names:
        mirror = _SIDE.sub(lambda m: swap.get(m.group(0), m.group(0)), n)
        if mirror not in index:
            return None
        out.append(index[mirror])
    return out


def check_flip_idx(flip_idx: Any, num_keypoints: int, where: str) -> list[int]:
    """``flip_idx`` as a list when it pairs each of the ``num_keypoints`` points with its mirror (a
    permutation that is its own inverse); otherwise :class:`DatasetFormatError` naming ``where``."""
    try:
        idx = [int(i) for i in flip_idx]
    except (TypeError, ValueError):
        raise DatasetFormatError(
            f"{where}: flip_idx must be a list of {num_keypoints} point indices, got {flip_idx!r}") from None
    if sorted(idx) != list(range(num_keypoints)):
        raise DatasetFormatError(
            f"{where}: flip_idx {idx} must list each of the {num_keypoints} keypoints 0..{num_keypoints - 1} once")
    if any(idx[j] != i for i, j in enumerate(idx)):
        raise DatasetFormatError(f"{where}: flip_idx {idx} must pair points (flip_idx[flip_idx[i]] == i)")
    return idx


def check_skeleton(skeleton: Any, num_keypoints: int, where: str, base: int = 0) -> list[tuple[int, int]]:
    """``skeleton`` (pairs of ``base``-based indices) as 0-based pairs; a bad pair is an error."""
    out = []
    for pair in skeleton or []:
        try:
            a, b = (int(v) - base for v in pair)
        except (TypeError, ValueError):
            raise DatasetFormatError(f"{where}: skeleton entry {pair!r} is not a pair of point indices") from None
        if not (0 <= a < num_keypoints and 0 <= b < num_keypoints):
            first = base
            raise DatasetFormatError(f"{where}: skeleton pair {list(pair)} names a point outside "
                                     f"{first}..{num_keypoints - 1 + first} ({'1' if base else '0'}-based)")
        out.append((a, b))
    return out


def check_sigmas(sigmas: Any, num_keypoints: int, where: str) -> list[float] | None:
    if sigmas is None:
        return None
    try:
        out = [float(s) for s in sigmas]
    except (TypeError, ValueError):
        raise DatasetFormatError(f"{where}: sigmas must be {num_keypoints} positive numbers, got {sigmas!r}") from None
    if len(out) != num_keypoints or not all(s > 0 for s in out):
        raise DatasetFormatError(f"{where}: sigmas must be {num_keypoints} positive numbers, got {out}")
    return out


def points_problem(points: np.ndarray, size: tuple[int, int] | None, tolerance: float = EDGE_TOLERANCE) -> str:
    """What is wrong with one object's points float ``[P, 3]`` (``""`` when nothing): a non-finite
    value, ``v`` outside {0, 1, 2}, a labelled point (``v > 0``) outside the ``size`` (H, W) image by
    more than ``tolerance`` (in the points' units)."""
    if not np.isfinite(points).all():
        return "keypoint with a NaN or infinite value"
    v = points[:, 2]
    bad = ~np.isin(v, (0, 1, 2))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        return f"keypoint {i} has visibility {v[i]:g}; v must be 0 (not labelled), 1 (labelled, hidden) or 2 (visible)"
    if size is not None:
        h, w = size
        x, y = points[:, 0], points[:, 1]
        out = (v > 0) & ((x < -tolerance) | (y < -tolerance) | (x > w + tolerance) | (y > h + tolerance))
        if out.any():
            i = int(np.flatnonzero(out)[0])
            return (f"keypoint {i} at ({x[i]:g}, {y[i]:g}) lies outside the {w:g}x{h:g} image "
                    f"(tolerance {tolerance:g}); set v = 0 for a point that is not in the image")
    return ""


def clean_points(points: np.ndarray) -> np.ndarray:
    """float32 ``[..., 3]`` with ``x = y = 0`` where ``v = 0``."""
    points = np.asarray(points, np.float32).copy()
    points[points[..., 2] == 0, :2] = 0
    return points
