"""The segmentation dataset (pairs -> aligned image and mask tensors) and its padding collate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from visiontasks.preprocessing import Preprocessing

from ..io import ImageInput, image_size_and_orientation, read_image
from .masks import MaskDecoder, MaskError
from .readers import SegmentationSample
from .transforms import eval_transform


def _refuse_unturned_mask(
    image_path: Path, mask_path: Path, mask_hw: tuple[int, ...], image_hw: tuple[int, ...]
) -> None:
    """A mask of the image's *stored* size, whose EXIF orientation turns it by 90 degrees when read, was
    drawn on the sideways picture (labelling tools differ): resizing it would not fix that."""
    if tuple(mask_hw) != tuple(image_hw)[::-1]:
        return
    orientation = image_size_and_orientation(image_path)[1]
    if orientation in (5, 6, 7, 8):
        raise MaskError(
            f"mask {mask_path} is {mask_hw[1]}x{mask_hw[0]} (WxH), the size image {image_path} has as stored, but "
            f"its EXIF orientation {orientation} turns the image to {image_hw[1]}x{image_hw[0]} when read: the mask "
            "was made on the unturned image; turn the mask the same way, or write the image upright without the "
            "EXIF tag (e.g. PIL ImageOps.exif_transpose and save)"
        )


@dataclass(eq=False, repr=False)
class SegmentationDataset(Dataset):
    """Reads pairs, decodes masks, checks sizes, applies an albumentations transform.

    Item: ``{"image": float32 [C, H, W], "mask": int64 [H, W] (absent without a mask file),
    "id": str (image path), "size": (H, W) of the transformed image, "orig_size": (H, W) of the
    image file}`` (``ops.mask_to_original(pred, size, orig_size)`` maps a prediction back to the file).

    A mask whose size differs from its image raises a :class:`MaskError` naming both files, unless
    ``resize_mismatched_masks`` (then the mask is resized with nearest-neighbour).
    """

    samples: Sequence[SegmentationSample]
    decoder: MaskDecoder | None  # None: no masks (prediction)
    transform: Callable[..., dict[str, Any]]
    resize_mismatched_masks: bool = False
    in_chans: int = 3
    cache: Any = None  # an ImageCache of this split ("image", "mask" fields at the file's size)

    def __post_init__(self) -> None:
        self.samples = list(self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The raw pair: ``uint8 [H, W, C]`` and ``[H, W]`` class indices (or ``None``), from the
        cache when there is one (read-only arrays, masks then in the cache's integer type)."""
        if self.cache is not None:
            arrays = self.cache.get(i)
            return arrays["image"], arrays.get("mask")
        s = self.samples[i]
        image = read_image(s.image, self.in_chans)
        if s.mask is None:
            return image, None
        assert self.decoder is not None, "masks need a decoder"
        mask = self.decoder.read(s.mask)
        if mask.shape != image.shape[:2]:
            _refuse_unturned_mask(s.image, s.mask, mask.shape, image.shape[:2])
            if not self.resize_mismatched_masks:
                raise MaskError(
                    f"mask {s.mask} is {mask.shape[1]}x{mask.shape[0]} (WxH) but image {s.image} is "
                    f"{image.shape[1]}x{image.shape[0]}; fix the files or set "
                    "resize_mismatched_masks: true to resize such masks with nearest-neighbour"
                )
            mask = cv2.resize(
                mask.astype(np.int32), (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST
            ).astype(np.int64)
        return image, mask

    def __getitem__(self, i: int) -> dict[str, Any]:
        image, mask = self.load(i)
        if mask is None:
            out = self.transform(image=image)
        else:
            # albumentations resizes masks with nearest-neighbour; int32 keeps cv2 happy
            out = self.transform(image=image, mask=mask.astype(np.int32))
        img = torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1))).float()
        item: dict[str, Any] = {
            "image": img,
            "id": str(self.samples[i].image),
            "size": tuple(img.shape[-2:]),
            "orig_size": tuple(image.shape[:2]),
        }
        if mask is not None:
            item["mask"] = torch.from_numpy(np.ascontiguousarray(out["mask"])).long()
        return item


def pad_collate(ignore_index: int = 255) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """A collate function padding images (with 0, the normalised mean) and masks (with
    ``ignore_index``) at the bottom/right to the largest size in the batch; ``size`` keeps each
    image's own size so predictions can be cropped back, ``orig_size`` its file's size. Written here because torch's default
    collate needs equal sizes and evaluation runs at each image's own resolution."""

    def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
        h = max(it["image"].shape[-2] for it in items)
        w = max(it["image"].shape[-1] for it in items)
        images = torch.zeros(len(items), items[0]["image"].shape[0], h, w)
        batch: dict[str, Any] = {key: [it[key] for it in items] for key in ("id", "size", "orig_size")}
        has_mask = ["mask" in it for it in items]
        if any(has_mask) and not all(has_mask):
            raise ValueError("a batch mixes images with and without masks")
        masks = torch.full((len(items), h, w), ignore_index, dtype=torch.long) if all(has_mask) else None
        for k, it in enumerate(items):
            ih, iw = it["image"].shape[-2:]
            images[k, :, :ih, :iw] = it["image"]
            if masks is not None:
                masks[k, :ih, :iw] = it["mask"]
        batch["image"] = images
        if masks is not None:
            batch["mask"] = masks
        return batch

    return collate


prediction_collate = pad_collate()  # the predict split's batching (no masks: ignore_index unused)


def prediction_dataset(images: Sequence[ImageInput], prep: Preprocessing) -> SegmentationDataset:
    """``images`` (files or in-memory images, no masks) through the evaluation pipeline of ``prep``,
    as the datamodule's predict split; batch them with :func:`pad_collate`."""
    return SegmentationDataset([SegmentationSample(p, None) for p in images], None, eval_transform(prep),
                               in_chans=prep.in_chans)
