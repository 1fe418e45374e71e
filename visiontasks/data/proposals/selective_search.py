"""Selective search (Uijlings, van de Sande, Gevers, Smeulders, IJCV 2013), on scikit-image + numpy.

Why hand-written: the maintained implementation (OpenCV's ``ximgproc.segmentation``) ships only in
``opencv-contrib-python(-headless)``, which installs the same ``cv2`` package as the
``opencv-python-headless`` that albumentations depends on; pip lets the two overwrite each other's
files and uninstalling either breaks ``cv2`` for both. The PyPI packages ``selectivesearch`` (0.4,
2017) and ``selective-search`` (1.1.0, 2022) are unmaintained pure-Python loops. The graph
segmentation itself is scikit-image's :func:`~skimage.segmentation.felzenszwalb` (the paper's
initial regions); what no library does is the hierarchical grouping, written here with vectorised
histograms (``np.bincount``) and a lazy-deletion heap of neighbour similarities.

Algorithm (section 3 of the paper):
1. initial regions: Felzenszwalb-Huttenlocher segmentation with threshold ``k`` in a colour space;
2. similarity of neighbouring regions = sum of the enabled measures among colour (histogram
   intersection of 25-bin-per-channel colour histograms), texture (intersection of 10-bin histograms
   of Gaussian-derivative responses, sigma 1, 8 orientations per channel), size
   (``1 - (|r_i| + |r_j|) / |image|``) and fill (``1 - (|BB_ij| - |r_i| - |r_j|) / |image|``);
3. repeatedly merge the most similar pair (histograms of the union are size-weighted means), until
   one region is left; every region of the hierarchy is a proposal (its bounding box);
4. diversification: several strategies (colour space x k x similarity set); ranking: a region's
   hierarchy position (1 = the top region) times a uniform random number, lower first; boxes from
   all strategies pooled, sorted, exact duplicates removed, the first ``max_boxes`` kept.

The "fast" mode of the paper: colour spaces HSV and Lab, k in {50, 100}, similarities C+T+S+F and
T+S+F (8 strategies). "quality" adds more colour spaces and thresholds; "single" is one strategy
(HSV, k=100, C+T+S+F), for tests and quick looks.
"""

from __future__ import annotations

import heapq
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage
from skimage import color as skcolor
from skimage.segmentation import felzenszwalb

from visiontasks.errors import InvalidInputError

COLOUR_BINS = 25
TEXTURE_BINS = 10
TEXTURE_ORIENTATIONS = 8
SIMILARITY_SETS = {"CTSF": (1, 1, 1, 1), "TSF": (0, 1, 1, 1), "F": (0, 0, 0, 1), "S": (0, 0, 1, 0)}
MODES = {
    "single": dict(colour_spaces=("hsv",), ks=(100,), similarities=("CTSF",)),
    "fast": dict(colour_spaces=("hsv", "lab"), ks=(50, 100), similarities=("CTSF", "TSF")),
    "quality": dict(
        colour_spaces=("hsv", "lab", "rgi", "rgb"), ks=(50, 100, 150, 300),
        similarities=("CTSF", "TSF", "F", "S"),
    ),
}


@dataclass(frozen=True)
class SelectiveSearchSettings:
    """Everything that changes the boxes; the proposal cache keys its files on this.

    ``max_side``: images whose longer side exceeds it are downscaled before the search (boxes are
    scaled back to the original pixels); ``None`` keeps full resolution. ``min_box_side``: boxes
    narrower or shorter than this (original pixels) are dropped.
    """

    mode: str = "fast"
    colour_spaces: tuple[str, ...] = ()
    ks: tuple[int, ...] = ()
    similarities: tuple[str, ...] = ()
    sigma: float = 0.8
    max_boxes: int = 2000
    max_side: int | None = 500
    min_box_side: float = 2.0
    seed: int = 0

    def strategies(self) -> list[tuple[str, int, str]]:
        if self.mode not in MODES:
            raise InvalidInputError(f"unknown selective search mode {self.mode!r}; known: {sorted(MODES)}")
        preset = MODES[self.mode]
        spaces = self.colour_spaces or preset["colour_spaces"]
        ks = self.ks or preset["ks"]
        sims = self.similarities or preset["similarities"]
        for s in spaces:
            if s not in _COLOUR_SPACES:
                raise InvalidInputError(f"unknown colour space {s!r}; known: {sorted(_COLOUR_SPACES)}")
        for s in sims:
            if s not in SIMILARITY_SETS:
                raise InvalidInputError(f"unknown similarity set {s!r}; known: {sorted(SIMILARITY_SETS)}")
        return [(s, int(k), m) for s in spaces for k in ks for m in sims]

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("colour_spaces", "ks", "similarities"):
            d[key] = list(d[key])
        return d


def _to_hsv(img: np.ndarray) -> np.ndarray:
    return skcolor.rgb2hsv(img)


def _to_lab(img: np.ndarray) -> np.ndarray:
    lab = skcolor.rgb2lab(img)
    return np.stack([lab[..., 0] / 100.0, (lab[..., 1] + 128) / 255.0, (lab[..., 2] + 128) / 255.0], -1)


def _to_rgi(img: np.ndarray) -> np.ndarray:
    s = img.sum(-1, keepdims=True)
    rg = img[..., :2] / np.maximum(s, 1e-6)
    return np.concatenate([rg, s / 3.0], -1)


_COLOUR_SPACES = {"hsv": _to_hsv, "lab": _to_lab, "rgi": _to_rgi, "rgb": lambda x: x}


def _bins(values: np.ndarray, n: int) -> np.ndarray:
    """Values in [0, 1] -> bin index in [0, n)."""
    return np.clip((values * n).astype(np.int64), 0, n - 1)


@dataclass
class _PixelFeatures:
    """Per-pixel histogram bin indices of one colour space (independent of ``k``)."""

    image: np.ndarray  # float [H, W, 3] in [0, 1]
    colour_bins: np.ndarray  # int [H*W, 3], values < COLOUR_BINS
    texture_bins: np.ndarray  # int [H*W, 3 * ORIENTATIONS], values < TEXTURE_BINS


def _pixel_features(rgb: np.ndarray, space: str) -> _PixelFeatures:
    img = np.clip(_COLOUR_SPACES[space](rgb), 0.0, 1.0).astype(np.float32)
    h, w, _ = img.shape
    colour_bins = _bins(img.reshape(-1, 3), COLOUR_BINS)
    textures = []
    angles = np.arange(TEXTURE_ORIENTATIONS) * (2 * np.pi / TEXTURE_ORIENTATIONS)
    for c in range(3):
        gy = ndimage.gaussian_filter(img[..., c], sigma=1.0, order=(1, 0))
        gx = ndimage.gaussian_filter(img[..., c], sigma=1.0, order=(0, 1))
        # directional derivative, half-wave rectified, so opposite orientations differ
        resp = np.maximum(np.cos(angles)[:, None, None] * gx + np.sin(angles)[:, None, None] * gy, 0)
        peak = resp.reshape(TEXTURE_ORIENTATIONS, -1).max(1)
        resp = resp / np.maximum(peak, 1e-12)[:, None, None]
        textures.append(_bins(resp.reshape(TEXTURE_ORIENTATIONS, -1).T, TEXTURE_BINS))
    return _PixelFeatures(img, colour_bins, np.concatenate(textures, 1))


def _region_histograms(labels: np.ndarray, bins: np.ndarray, nbins: int, n: int) -> np.ndarray:
    """L1-normalised histograms ``[n, bins.shape[1] * nbins]`` of the pixels of each label."""
    flat = labels.reshape(-1)
    hist = np.concatenate(
        [np.bincount(flat * nbins + bins[:, j], minlength=n * nbins).reshape(n, nbins)
         for j in range(bins.shape[1])], 1,
    ).astype(np.float32)
    return hist / np.maximum(hist.sum(1, keepdims=True), 1)


def _hierarchical_grouping(
    labels: np.ndarray, feats: _PixelFeatures, weights: Sequence[int]
) -> np.ndarray:
    """Boxes ``[2R-1 or fewer, 4]`` (xyxy, pixels) of every region of the hierarchy, in creation
    order (initial regions first, the last merge last)."""
    h, w = labels.shape
    n0 = int(labels.max()) + 1
    cap = 2 * n0
    size = np.zeros(cap, np.float64)
    size[:n0] = np.bincount(labels.reshape(-1), minlength=n0)
    boxes = np.zeros((cap, 4), np.float64)
    for i, sl in enumerate(ndimage.find_objects(labels + 1)):
        boxes[i] = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
    wc, wt, ws, wf = weights
    colour = _region_histograms(labels, feats.colour_bins, COLOUR_BINS, n0) if wc else None
    texture = _region_histograms(labels, feats.texture_bins, TEXTURE_BINS, n0) if wt else None
    if colour is not None:
        colour = np.concatenate([colour, np.zeros((cap - n0, colour.shape[1]), np.float32)])
    if texture is not None:
        texture = np.concatenate([texture, np.zeros((cap - n0, texture.shape[1]), np.float32)])
    im_size = float(h * w)

    def sims(t: int, others: np.ndarray) -> np.ndarray:
        s = np.zeros(len(others), np.float64)
        if wc:
            s += np.minimum(colour[others], colour[t]).sum(1)
        if wt:
            s += np.minimum(texture[others], texture[t]).sum(1)
        if ws:
            s += 1.0 - (size[others] + size[t]) / im_size
        if wf:
            bb = ((np.maximum(boxes[others, 2], boxes[t, 2]) - np.minimum(boxes[others, 0], boxes[t, 0]))
                  * (np.maximum(boxes[others, 3], boxes[t, 3]) - np.minimum(boxes[others, 1], boxes[t, 1])))
            s += 1.0 - (bb - size[others] - size[t]) / im_size
        return s

    # neighbours: 4-connected label changes
    a = np.concatenate([labels[:, :-1].ravel(), labels[:-1, :].ravel()])
    b = np.concatenate([labels[:, 1:].ravel(), labels[1:, :].ravel()])
    diff = a != b
    lo, hi = np.minimum(a[diff], b[diff]), np.maximum(a[diff], b[diff])
    pairs = np.unique(lo.astype(np.int64) * n0 + hi)
    pi, pj = pairs // n0, pairs % n0
    neighbours: list[set[int]] = [set() for _ in range(cap)]
    for i, j in zip(pi.tolist(), pj.tolist()):
        neighbours[i].add(j)
        neighbours[j].add(i)
    heap: list[tuple[float, int, int]] = []
    for i in range(n0):
        others = np.fromiter((j for j in neighbours[i] if j > i), np.int64)
        if len(others):
            heap.extend(zip((-sims(i, others)).tolist(), [i] * len(others), others.tolist()))
    heapq.heapify(heap)
    alive = np.zeros(cap, bool)
    alive[:n0] = True
    n = n0
    while heap:
        _, i, j = heapq.heappop(heap)
        if not (alive[i] and alive[j]):
            continue  # stale entry: one side was merged already
        t = n
        n += 1
        size[t] = size[i] + size[j]
        boxes[t, :2] = np.minimum(boxes[i, :2], boxes[j, :2])
        boxes[t, 2:] = np.maximum(boxes[i, 2:], boxes[j, 2:])
        if wc:
            colour[t] = (size[i] * colour[i] + size[j] * colour[j]) / size[t]
        if wt:
            texture[t] = (size[i] * texture[i] + size[j] * texture[j]) / size[t]
        alive[i] = alive[j] = False
        alive[t] = True
        nb = (neighbours[i] | neighbours[j]) - {i, j}
        neighbours[i] = neighbours[j] = set()
        for k in nb:
            neighbours[k].discard(i)
            neighbours[k].discard(j)
            neighbours[k].add(t)
        neighbours[t] = nb
        if nb:
            others = np.fromiter(nb, np.int64)
            for s, k in zip((-sims(t, others)).tolist(), others.tolist()):
                heapq.heappush(heap, (s, k, t))
    return boxes[:n]


def _dedupe_sorted(boxes: np.ndarray) -> np.ndarray:
    """Remove exact duplicate rows, keeping the first (best-ranked) occurrence."""
    if len(boxes) == 0:
        return boxes
    _, first = np.unique(boxes, axis=0, return_index=True)
    return boxes[np.sort(first)]


def selective_search(image: np.ndarray, settings: SelectiveSearchSettings | None = None) -> np.ndarray:
    """Proposals for one ``uint8 [H, W, 3]`` RGB image: ``float32 [P, 4]`` xyxy in pixels of that
    image, best-ranked first, ``P <= settings.max_boxes``, no exact duplicates."""
    settings = settings or SelectiveSearchSettings()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, -1)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {image.shape}")
    h0, w0 = image.shape[:2]
    if h0 == 0 or w0 == 0:
        return np.zeros((0, 4), np.float32)
    rgb = image.astype(np.float32) / 255.0
    scale = 1.0
    if settings.max_side is not None and max(h0, w0) > settings.max_side:
        from skimage.transform import rescale

        scale = settings.max_side / max(h0, w0)
        rgb = np.clip(rescale(rgb, scale, channel_axis=-1, anti_aliasing=True), 0, 1).astype(np.float32)
    rng = np.random.default_rng(settings.seed)
    all_boxes, all_rank = [], []
    feats_cache: dict[str, _PixelFeatures] = {}
    for space, k, sim in settings.strategies():
        if space not in feats_cache:
            feats_cache[space] = _pixel_features(rgb, space)
        feats = feats_cache[space]
        labels = felzenszwalb(feats.image, scale=k, sigma=settings.sigma, min_size=k)
        if not np.bincount(labels.ravel()).all():  # make the labels 0..R-1 without gaps
            labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)
        boxes = _hierarchical_grouping(labels, feats, SIMILARITY_SETS[sim])
        # paper's ranking: hierarchy position (1 = top region) times a uniform random number
        position = np.arange(len(boxes), 0, -1, dtype=np.float64)
        all_boxes.append(boxes)
        all_rank.append(position * rng.random(len(boxes)))
    boxes = np.concatenate(all_boxes) / scale
    order = np.argsort(np.concatenate(all_rank), kind="stable")
    boxes = boxes[order]
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w0)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h0)
    boxes = np.round(boxes, 2)
    keep = ((boxes[:, 2] - boxes[:, 0]) >= settings.min_box_side) & (
        (boxes[:, 3] - boxes[:, 1]) >= settings.min_box_side
    )
    boxes = _dedupe_sorted(boxes[keep])[: settings.max_boxes]
    return boxes.astype(np.float32)


__all__ = ["SelectiveSearchSettings", "selective_search", "MODES", "SIMILARITY_SETS"]
