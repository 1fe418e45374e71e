"""albumentations pipelines for detection: the boxes move with the image.

Geometry: ``letterbox`` (scale the longer side to fit, pad to the target size; aspect ratio kept),
``stretch`` (resize to the target size), ``shortest_edge`` (torchvision's / Detectron's rule: scale so
the shorter side is ``image_size[0]`` unless the longer would exceed ``image_size[1]``, no padding) or
``none`` (keep the file's size). With the last two, batches mix sizes and the detectors pad them. Training adds horizontal flip, random scale/translate (``Affine``) and colour
jitter. Boxes are clipped to the image by albumentations and boxes left degenerate are dropped.
Normalisation (ImageNet mean/std by default) happens here, in the data, not in the models.

Keypoints (``[K, P, 3]``, one row per box) go through albumentations with the boxes (``KeypointParams``,
``remove_invisible=False`` so every point keeps its place, ``v`` carried as a label field). The flip is
:class:`KeypointHorizontalFlip`: albumentations 2.0.8's ``HorizontalFlip`` maps a point to ``W - 1 - x``
(pixel indices) and knows no mirror pairs; ours maps it to ``W - x``, as boxes are mapped, and swaps
each object's points by the data set's ``flip_idx`` (a flipped left wrist is the right wrist). After
the transform a point outside the image gets ``v = 0`` (and ``x = y = 0``); ``v = 0`` stays 0.
albumentations' resize scales points by the nominal scale and boxes by the rounded image size, so a
point agrees with a box corner to within half a pixel of the resized image; stretch and exact
scales agree exactly.

Besides the ground truth, one pipeline call also moves (each in its own ``kind`` so they never mix)
the region proposals, when there are any, and the *frame*: the box of the whole original image,
which tells where the file's pixels went (used to map predictions back to file pixels).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import albumentations as A
import cv2
import numpy as np
import torch

from albumentations.pytorch import ToTensorV2

from visiontasks.preprocessing import RESIZE_MODES, IMAGENET_MEAN, IMAGENET_STD, Preprocessing, preprocessing_of  # noqa: F401
from visiontasks.preprocessing.albumentations_ops import ShortestEdgeResize, mean_fill  # noqa: F401  (re-exported)
from visiontasks.ops.geometry import boxes_to_original  # noqa: F401  (re-exported: data.detection API)


KIND_GT, KIND_PROPOSAL, KIND_FRAME = 0, 1, 2


class KeypointHorizontalFlip(A.HorizontalFlip):
    """``HorizontalFlip`` whose keypoints map to ``W - x`` (the boxes' pixel-edge frame) and whose
    objects' points are reordered by ``flip_idx`` (point ``i`` becomes the old point ``flip_idx[i]``,
    Ultralytics' convention). Keypoints must come as ``K * P`` rows, object by object (``P =
    len(flip_idx)``); ``flip_idx=None`` keeps the order (points without sides)."""

    def __init__(self, flip_idx: Sequence[int] | None = None, p: float = 0.5) -> None:
        super().__init__(p=p)
        self.flip_idx = list(flip_idx) if flip_idx is not None else None

    def apply_to_keypoints(self, keypoints: np.ndarray, **params: object) -> np.ndarray:
        out = keypoints.copy()
        out[:, 0] = params["shape"][1] - keypoints[:, 0]  # type: ignore[index]
        if self.flip_idx is not None and len(out):
            out = out.reshape(-1, len(self.flip_idx), out.shape[-1])[:, self.flip_idx].reshape(keypoints.shape)
        return out


@dataclass
class AugmentConfig:
    """Training augmentation strengths (probability 0 or range 1 switches one off)."""

    hflip: float = 0.5
    scale: tuple[float, float] = (0.75, 1.25)
    translate: float = 0.1
    affine_p: float = 0.5
    color_jitter: float = 0.3
    color_p: float = 0.5


def build_detection_transform(
    image_size: int | Sequence[int] | None,
    resize: str = "letterbox",
    train: bool = False,
    augment: AugmentConfig | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    seed: int | None = None,
    keypoints: bool = False,
    flip_idx: Sequence[int] | None = None,
) -> A.Compose:
    """The pipeline for one split: geometry, (training) augmentation, normalisation, to tensor.

    Call it as ``t(image=uint8 [H, W, 3], bboxes=float [K, 4] xyxy px, labels=[K], kinds=[K],
    ids=[K][, masks=list of uint8 [H, W]])`` (``ids``: each box's index, to find its mask after boxes
    were dropped); with ``keypoints`` also ``keypoints=float [K * P, 2] px, visibility=[K * P]``
    (:func:`apply_detection_transform` does this), the flip swapping points by ``flip_idx``.
    """
    prep = preprocessing_of(image_size, resize, mean, std)
    ops: list[A.BasicTransform] = prep.resize_ops()
    fill = mean_fill(prep)  # pad with the mean colour: 0 after normalising
    if train:
        aug = augment or AugmentConfig()
        if aug.hflip > 0:
            ops.append(KeypointHorizontalFlip(flip_idx, p=aug.hflip) if keypoints else A.HorizontalFlip(p=aug.hflip))
        if aug.affine_p > 0 and (tuple(aug.scale) != (1.0, 1.0) or aug.translate > 0):
            ops.append(A.Affine(scale=tuple(aug.scale), translate_percent=(-aug.translate, aug.translate),
                                border_mode=cv2.BORDER_CONSTANT, fill=fill, p=aug.affine_p))
        if aug.color_p > 0 and aug.color_jitter > 0:
            j = aug.color_jitter
            ops.append(A.ColorJitter(brightness=(1 - j, 1 + j), contrast=(1 - j, 1 + j),
                                     saturation=(1 - j, 1 + j), hue=(-j / 6, j / 6), p=aug.color_p))
    ops += [A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0), ToTensorV2()]
    with warnings.catch_warnings():
        # resize="none" without augmentation has no geometric op: boxes pass through unchanged
        warnings.filterwarnings("ignore", message="Got processor for (bboxes|keypoints), but no transform")
        return A.Compose(
            ops,
            bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels", "kinds", "ids"], clip=True,
                                     filter_invalid_bboxes=True),
            keypoint_params=A.KeypointParams(format="xy", label_fields=["visibility"], remove_invisible=False)
            if keypoints else None,
            seed=seed,
        )


def eval_transform(prep: Preprocessing, keypoints: bool = False) -> A.Compose:
    """The evaluation pipeline of :class:`DetectionDataModule` (its resize, normalise) from a
    checkpoint's :class:`~visiontasks.preprocessing.Preprocessing`; ``keypoints``: it moves them too."""
    return build_detection_transform(prep.image_size, prep.resize, train=False, mean=prep.mean, std=prep.std,
                                     keypoints=keypoints)


def apply_detection_transform(
    transform: A.Compose,
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    proposals: np.ndarray | None = None,
    min_box_size: float = 1.0,
    masks: np.ndarray | None = None,
    keypoints: np.ndarray | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run ``transform`` on one image with its boxes (xyxy px of ``image``).

    Returns ``(image float32 [3, H', W'], {"boxes", "labels", "image_box", ["proposals"]})`` in the
    pixels of the transformed image; boxes narrower or shorter than ``min_box_size`` after the
    transform are dropped (ground truth and proposals alike).

    ``masks`` uint8 ``[K, H, W]``, one per box: moved with the image (albumentations' ``masks``,
    nearest-neighbour) into ``target["masks"]`` ``[K', H', W']`` for the boxes kept; an object whose
    mask has no pixel left after the transform is dropped with its box.

    ``keypoints`` float ``[K, P, 3]`` (x, y, v in pixels of ``image``), one row per box, with a
    pipeline built with ``keypoints=True``: moved with the image into ``target["keypoints"]``
    ``[K', P, 3]`` for the boxes kept; points that leave the image get ``v = 0``, and every ``v = 0``
    point has ``x = y = 0``.
    """
    h0, w0 = image.shape[:2]
    parts = [boxes.reshape(-1, 4)]
    kinds = [np.full(len(parts[0]), KIND_GT)]
    lab = [labels.reshape(-1)]
    if proposals is not None:
        proposals = np.asarray(proposals, np.float32).reshape(-1, 4)
        proposals = proposals.copy()
        proposals[:, 0::2] = proposals[:, 0::2].clip(0, w0)
        proposals[:, 1::2] = proposals[:, 1::2].clip(0, h0)
        keep = (proposals[:, 2] > proposals[:, 0]) & (proposals[:, 3] > proposals[:, 1])
        proposals = proposals[keep]
        parts.append(proposals)
        kinds.append(np.full(len(proposals), KIND_PROPOSAL))
        lab.append(np.full(len(proposals), -1))
    parts.append(np.array([[0, 0, w0, h0]], np.float32))
    kinds.append(np.array([KIND_FRAME]))
    lab.append(np.array([-1]))
    all_boxes = np.concatenate(parts).astype(np.float32)
    extra: dict[str, object] = {"masks": list(masks)} if masks is not None and len(masks) else {}
    if keypoints is not None:
        keypoints = np.asarray(keypoints, np.float32)  # [K, P, 3]
        extra.update(keypoints=keypoints[..., :2].reshape(-1, 2), visibility=keypoints[..., 2].reshape(-1))
    out = transform(image=image, bboxes=all_boxes, labels=np.concatenate(lab).astype(np.int64),
                    kinds=np.concatenate(kinds).astype(np.int64), ids=np.arange(len(all_boxes)), **extra)
    tb = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
    tk = np.asarray(out["kinds"], np.int64).reshape(-1)
    tl = np.asarray(out["labels"], np.int64).reshape(-1)
    big = ((tb[:, 2] - tb[:, 0]) >= min_box_size) & ((tb[:, 3] - tb[:, 1]) >= min_box_size)
    img = out["image"]
    gt = (tk == KIND_GT) & big
    h, w = img.shape[-2:]
    if masks is not None:
        kept = np.asarray(out["ids"], np.int64).reshape(-1)[gt]
        moved = np.stack([np.asarray(m) for m in out["masks"]]) if extra else np.zeros((0, h, w), np.uint8)
        moved = moved[kept].astype(np.uint8)
        alive = moved.any(axis=(1, 2))  # its mask vanished: drop the object
        gt[np.flatnonzero(gt)[~alive]] = False
    target: dict[str, torch.Tensor] = {
        "boxes": torch.from_numpy(tb[gt].copy()),
        "labels": torch.from_numpy(tl[gt].copy()),
    }
    if masks is not None:
        target["masks"] = torch.from_numpy(np.ascontiguousarray(moved[alive]))
    if keypoints is not None:
        target["keypoints"] = _moved_keypoints(out, keypoints.shape[1], np.asarray(out["ids"], np.int64)[gt], h, w)
    frame = tb[tk == KIND_FRAME]
    target["image_box"] = torch.from_numpy(frame[0].copy()) if len(frame) else torch.tensor([0.0, 0.0, w, h])
    if proposals is not None:
        target["proposals"] = torch.from_numpy(tb[(tk == KIND_PROPOSAL) & big].copy())
    return img.float(), target


def _moved_keypoints(out: dict, num_keypoints: int, kept: np.ndarray, h: int, w: int) -> torch.Tensor:
    """float32 ``[K', P, 3]`` of the transformed ground-truth objects ``kept`` (their box ids, which
    are their rows): points outside the ``h`` x ``w`` image, or not labelled, become ``(0, 0, 0)``."""
    xy = np.asarray(out["keypoints"], np.float32).reshape(-1, num_keypoints, 2)
    v = np.asarray(out["visibility"], np.float32).reshape(-1, num_keypoints)
    points = np.concatenate([xy, v[..., None]], axis=-1)[kept]
    x, y = points[..., 0], points[..., 1]
    gone = (points[..., 2] == 0) | (x < 0) | (y < 0) | (x > w) | (y > h)
    points[gone] = 0
    return torch.from_numpy(np.ascontiguousarray(points, np.float32))
