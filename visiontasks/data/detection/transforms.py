"""albumentations pipelines for detection: the boxes move with the image.

Geometry: ``letterbox`` (scale the longer side to fit, pad to the target size; aspect ratio kept),
``stretch`` (resize to the target size), ``shortest_edge`` (torchvision's / Detectron's rule: scale so
the shorter side is ``image_size[0]`` unless the longer would exceed ``image_size[1]``, no padding) or
``none`` (keep the file's size). With the last two, batches mix sizes and the detectors pad them. Training adds horizontal flip, random scale/translate (``Affine``) and colour
jitter. Boxes are clipped to the image by albumentations and boxes left degenerate are dropped.
Normalisation (ImageNet mean/std by default) happens here, in the data, not in the models.

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
) -> A.Compose:
    """The pipeline for one split: geometry, (training) augmentation, normalisation, to tensor.

    Call it as ``t(image=uint8 [H, W, 3], bboxes=float [K, 4] xyxy px, labels=[K], kinds=[K],
    ids=[K][, masks=list of uint8 [H, W]])`` (``ids``: each box's index, to find its mask after boxes
    were dropped).
    """
    prep = preprocessing_of(image_size, resize, mean, std)
    ops: list[A.BasicTransform] = prep.resize_ops()
    fill = mean_fill(prep)  # pad with the mean colour: 0 after normalising
    if train:
        aug = augment or AugmentConfig()
        if aug.hflip > 0:
            ops.append(A.HorizontalFlip(p=aug.hflip))
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
        warnings.filterwarnings("ignore", message="Got processor for bboxes, but no transform")
        return A.Compose(
            ops,
            bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels", "kinds", "ids"], clip=True,
                                     filter_invalid_bboxes=True),
            seed=seed,
        )


def eval_transform(prep: Preprocessing) -> A.Compose:
    """The evaluation pipeline of :class:`DetectionDataModule` (its resize, normalise) from a
    checkpoint's :class:`~visiontasks.preprocessing.Preprocessing`."""
    return build_detection_transform(prep.image_size, prep.resize, train=False, mean=prep.mean, std=prep.std)


def apply_detection_transform(
    transform: A.Compose,
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    proposals: np.ndarray | None = None,
    min_box_size: float = 1.0,
    masks: np.ndarray | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run ``transform`` on one image with its boxes (xyxy px of ``image``).

    Returns ``(image float32 [3, H', W'], {"boxes", "labels", "image_box", ["proposals"]})`` in the
    pixels of the transformed image; boxes narrower or shorter than ``min_box_size`` after the
    transform are dropped (ground truth and proposals alike).

    ``masks`` uint8 ``[K, H, W]``, one per box: moved with the image (albumentations' ``masks``,
    nearest-neighbour) into ``target["masks"]`` ``[K', H', W']`` for the boxes kept; an object whose
    mask has no pixel left after the transform is dropped with its box.
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
    extra = {"masks": list(masks)} if masks is not None and len(masks) else {}
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
    frame = tb[tk == KIND_FRAME]
    target["image_box"] = torch.from_numpy(frame[0].copy()) if len(frame) else torch.tensor([0.0, 0.0, w, h])
    if proposals is not None:
        target["proposals"] = torch.from_numpy(tb[(tk == KIND_PROPOSAL) & big].copy())
    return img.float(), target
