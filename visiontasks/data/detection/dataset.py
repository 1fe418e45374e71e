"""The detection dataset (records -> image tensor + target dict) and its collate function."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from visiontasks.data.io import ImageInput, read_image
from visiontasks.preprocessing import Preprocessing

from .common import DetectionRecord
from .masks import decode_masks
from .transforms import apply_detection_transform, eval_transform

ProposalSource = Callable[[Path], np.ndarray]


@dataclass(eq=False, repr=False)
class DetectionDataset(Dataset):
    """``dataset[i] -> (image float32 [3, H, W], target)``.

    ``target``: ``boxes`` float32 [K, 4] xyxy pixels of the transformed image, ``labels`` int64 [K]
    (0 = first real class, no background index), ``image_id`` int, ``orig_size`` (H, W) of the file,
    ``size`` (H, W) after the transform, ``path`` str, ``image_box`` float32 [4] (where the file's
    pixels lie in the transformed image), and ``proposals`` float32 [P, 4] (transformed-image pixels)
    when a ``proposal_source`` is set (``source(path) -> [P, 4]`` xyxy pixels of the file), and
    ``masks`` uint8 [K, H, W] (one 0/1 mask per box, transformed with the image) when the records
    carry instance masks.
    """

    records: list[DetectionRecord]
    transform: A.Compose
    proposal_source: ProposalSource | None = None
    min_box_size: float = 1.0

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        rec = self.records[index]
        image = read_image(rec.path)  # grey / RGBA / palette -> RGB; errors name the file
        h0, w0 = image.shape[:2]
        boxes = rec.boxes
        if rec.size is not None and rec.size != (h0, w0):
            # the annotation's size disagrees with the file: scale boxes to the real pixels
            sy, sx = h0 / rec.size[0], w0 / rec.size[1]
            boxes = boxes * np.array([sx, sy, sx, sy], np.float32)
        masks = None
        if rec.masks is not None:  # decoded in the annotation's frame, resized to the file's if it differs
            masks = decode_masks(rec.masks, rec.size or (h0, w0))
            if masks.shape[1:] != (h0, w0):
                masks = np.stack([cv2.resize(m, (w0, h0), interpolation=cv2.INTER_NEAREST) for m in masks]) \
                    if len(masks) else np.zeros((0, h0, w0), np.uint8)
        proposals = None
        if self.proposal_source is not None:
            proposals = np.asarray(self.proposal_source(rec.path), np.float32).reshape(-1, 4)
        img, target = apply_detection_transform(
            self.transform, image, boxes, rec.labels, proposals, self.min_box_size, masks
        )
        target.update(
            image_id=int(rec.image_id),
            orig_size=(int(h0), int(w0)),
            size=(int(img.shape[-2]), int(img.shape[-1])),
            path=str(rec.path),
        )
        return img, target


def detection_collate(batch: list[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """A list of images (sizes may differ) and a list of target dicts: detectors batch them."""
    images = [b[0] for b in batch]
    targets = [b[1] for b in batch]
    return images, targets


def worker_init_fn(worker_id: int) -> None:
    """Give each loader worker its own augmentation stream (the loader's per-epoch seed)."""
    info = torch.utils.data.get_worker_info()
    if info is not None and hasattr(info.dataset, "transform"):
        info.dataset.transform.set_random_seed(int(torch.initial_seed() % 2**31))


def prediction_dataset(images: Sequence[ImageInput], prep: Preprocessing) -> DetectionDataset:
    """``images`` (files or in-memory images, no boxes; ``image_id`` = position) through the
    evaluation pipeline of ``prep``, as the datamodule's predict split; batch with :func:`detection_collate`."""
    empty = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    records = [DetectionRecord(p, i, *empty) for i, p in enumerate(images)]  # type: ignore[arg-type]
    return DetectionDataset(records, eval_transform(prep))
