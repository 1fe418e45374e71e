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
from visiontasks.preprocessing import Preprocessing, pair

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
    carry instance masks, and ``keypoints`` float32 [K, P, 3] (x, y, v in transformed-image pixels;
    ``v = 0``: not labelled or moved out of the image, then ``x = y = 0``) when they carry keypoints
    (the transform must be built with ``keypoints=True``).

    With ``cache`` (an :class:`~visiontasks.data.cache.ImageCache` of this split) the image comes
    decoded, possibly shrunk: boxes and proposals are scaled with it, ``orig_size`` stays the file's,
    and ``image_box`` (the shrunk image's frame through the transform) still maps to the file's
    pixels with ``ops.boxes_to_original``.
    """

    records: list[DetectionRecord]
    transform: A.Compose
    proposal_source: ProposalSource | None = None
    min_box_size: float = 1.0
    cache: Any = None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        rec = self.records[index]
        if self.cache is not None:
            image = self.cache.get(index)["image"]
            h0, w0 = (int(v) for v in self.cache.orig_sizes[index])
        else:
            image = read_image(rec.path)  # grey / RGBA / palette -> RGB; errors name the file
            h0, w0 = image.shape[:2]
        boxes, points = rec.boxes, rec.keypoints
        if rec.size is not None and rec.size != (h0, w0):
            # the annotation's size disagrees with the file: scale boxes (and points) to the real pixels
            sy, sx = h0 / rec.size[0], w0 / rec.size[1]
            boxes = boxes * np.array([sx, sy, sx, sy], np.float32)
            points = None if points is None else points * np.array([sx, sy, 1], np.float32)
        h1, w1 = image.shape[:2]  # the file's size, or a shrunk cached image's
        masks = None
        if rec.masks is not None:  # decoded in the annotation's frame, resized to the image's if it differs
            masks = decode_masks(rec.masks, rec.size or (h0, w0))
            if masks.shape[1:] != (h1, w1):
                masks = np.stack([cv2.resize(m, (w1, h1), interpolation=cv2.INTER_NEAREST) for m in masks]) \
                    if len(masks) else np.zeros((0, h1, w1), np.uint8)
        proposals = None
        if self.proposal_source is not None:
            proposals = np.asarray(self.proposal_source(rec.path), np.float32).reshape(-1, 4)
        if (h1, w1) != (h0, w0):  # a shrunk cached image: file pixels -> its pixels
            shrink = np.array([w1 / w0, h1 / h0, w1 / w0, h1 / h0], np.float32)
            boxes = boxes * shrink
            proposals = None if proposals is None else proposals * shrink
            points = None if points is None else points * np.array([w1 / w0, h1 / h0, 1], np.float32)
        img, target = apply_detection_transform(
            self.transform, image, boxes, rec.labels, proposals, self.min_box_size, masks, points
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


prediction_collate = detection_collate  # the predict split's batching


def worker_init_fn(worker_id: int) -> None:
    """Give each loader worker its own augmentation stream (the loader's per-epoch seed)."""
    info = torch.utils.data.get_worker_info()
    transforms = getattr(info.dataset, "transform", None) if info is not None else None
    for t in transforms if isinstance(transforms, list) else [transforms]:  # litdata keeps a list
        if hasattr(t, "set_random_seed"):
            t.set_random_seed(int(torch.initial_seed() % 2**31))


def prediction_dataset(images: Sequence[ImageInput], prep: Preprocessing) -> DetectionDataset:
    """``images`` (files or in-memory images, no boxes; ``image_id`` = position) through the
    evaluation pipeline of ``prep``, as the datamodule's predict split; batch with :func:`detection_collate`."""
    empty = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    records = [DetectionRecord(p, i, *empty) for i, p in enumerate(images)]  # type: ignore[arg-type]
    return DetectionDataset(records, eval_transform(prep))
def working_scale(size: tuple[int, int], image_size: int | Sequence[int] | None, resize: str, zoom: float) -> float:
    """How much of the file ``size`` (H, W) the pipeline can use: the scale its resize applies times
    ``zoom`` (the largest training scale; 1 for evaluation); :meth:`Preprocessing.working_scale`."""
    if resize == "none" or image_size is None:
        return 1.0
    return Preprocessing(resize, pair(image_size)).working_scale(size, zoom)


def detection_cache_parts(
    records: Sequence[DetectionRecord], image_size: int | Sequence[int] | None, resize: str, zoom: float
) -> tuple[list[Path], list[Any], Any, Any, dict[str, Any]]:
    """``(files, fields, plan, decode, settings)`` of a split's decoded images, each shrunk by
    :func:`working_scale` (never enlarged): what the image cache and the streaming chunks store."""
    from visiontasks.data.cache import CacheField, resize_to, shrink_size
    from visiontasks.data.io import image_size as header_size

    paths = [r.path for r in records]

    def plan(i: int) -> tuple[tuple[int, int], tuple[int, int]]:
        w0, h0 = header_size(paths[i])
        return (h0, w0), shrink_size((h0, w0), working_scale((h0, w0), image_size, resize, zoom))

    def decode(i: int, size: tuple[int, int]) -> dict[str, np.ndarray]:
        return {"image": resize_to(read_image(paths[i]), size)}

    settings = {"image_size": image_size, "resize": resize, "zoom": zoom}
    return paths, [CacheField("image", "uint8", 3)], plan, decode, settings


def detection_image_cache(
    mode: str,
    records: Sequence[DetectionRecord],
    image_size: int | Sequence[int] | None,
    resize: str,
    zoom: float,
    what: str,
    cache_dir: str | None = None,
    processes: int = 1,
) -> Any:
    """The :class:`~visiontasks.data.cache.ImageCache` of a split's images (:func:`detection_cache_parts`)."""
    from visiontasks.data.cache import build_image_cache

    paths, fields, plan, decode, settings = detection_cache_parts(records, image_size, resize, zoom)
    return build_image_cache(mode, len(paths), paths, fields, plan, decode, settings,
                             what, cache_dir, processes=processes)
