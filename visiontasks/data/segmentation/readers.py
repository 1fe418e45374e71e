"""Finding (image, mask) pairs on disk and reading them into aligned arrays.

Layouts:
- folders: ``<images>/<name>.<ext>`` with ``<masks>/<name><mask_suffix>`` (sub-folders mirrored);
- Pascal VOC: ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png``, ids listed in
  ``ImageSets/Segmentation/<split>.txt``;
- a dataset YAML (COCO128-segmentation style): ``<split>: {images: DIR, masks: DIR}`` relative to
  the YAML's folder, and ``classes: {id: name}`` with possibly sparse ids.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch
import yaml
from torch.utils.data import Dataset

from ..io import IMAGE_EXTENSIONS, read_image
from .masks import MaskDecoder, MaskError

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip


@dataclass(frozen=True)
class SegmentationSample:
    """One image file and its mask file (``None`` for images to predict on)."""

    image: Path
    mask: Path | None


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _missing(missing: list[tuple[Path, Path]], total: int, where: str, skip: bool) -> None:
    if not missing:
        return
    shown = "; ".join(f"{img} -> {mask}" for img, mask in missing[:3])
    msg = f"{where}: {len(missing)} of {total} images have no mask (image -> expected mask: {shown})"
    if not skip:
        raise MaskError(msg + "; add the masks, or set skip_missing_masks: true to leave those images out")
    warnings.warn(msg + "; those images are skipped", stacklevel=3)


def list_folder_pairs(
    image_dir: str | Path,
    mask_dir: str | Path,
    mask_suffix: str = ".png",
    skip_missing_masks: bool = False,
) -> list[SegmentationSample]:
    """Every image under ``image_dir`` with the mask ``mask_dir/<same relative path><mask_suffix>``.

    A missing mask raises a :class:`MaskError` naming the image and the mask looked for (or, with
    ``skip_missing_masks``, the image is left out with one warning giving the count).
    """
    image_dir, mask_dir = Path(image_dir), Path(mask_dir)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder {image_dir} does not exist")
    if not mask_dir.is_dir():
        raise FileNotFoundError(f"mask folder {mask_dir} does not exist (images are in {image_dir})")
    images = _images_in(image_dir)
    if not images:
        raise FileNotFoundError(f"no images in {image_dir} (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    samples, missing = [], []
    for img in images:
        mask = mask_dir / img.relative_to(image_dir).with_suffix(mask_suffix)
        if mask.is_file():
            samples.append(SegmentationSample(img, mask))
        else:
            missing.append((img, mask))
    _missing(missing, len(images), str(image_dir), skip_missing_masks)
    return samples


def list_voc_pairs(root: str | Path, split: str, skip_missing_masks: bool = False) -> list[SegmentationSample]:
    """Pascal VOC segmentation: ids of ``ImageSets/Segmentation/<split>.txt`` under ``root``
    (the ``VOC2012`` folder)."""
    root = Path(root)
    lst = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not lst.is_file():
        have = sorted(p.stem for p in (root / "ImageSets" / "Segmentation").glob("*.txt"))
        raise FileNotFoundError(
            f"VOC split list {lst} does not exist"
            + (f"; splits found: {', '.join(have)}" if have else f"; is {root} a VOC20xx folder?")
        )
    ids = [line.split()[0] for line in lst.read_text().splitlines() if line.strip()]
    samples, missing = [], []
    for i in ids:
        img = root / "JPEGImages" / f"{i}.jpg"
        if not img.is_file():
            raise FileNotFoundError(f"{lst} lists {i} but image {img} does not exist")
        mask = root / "SegmentationClass" / f"{i}.png"
        if mask.is_file():
            samples.append(SegmentationSample(img, mask))
        else:
            missing.append((img, mask))
    _missing(missing, len(ids), str(lst), skip_missing_masks)
    return samples


def read_dataset_yaml(path: str | Path) -> dict[str, Any]:
    """A COCO128-segmentation style YAML -> ``{"splits": {name: (image_dir, mask_dir)},
    "classes": {id: name}}`` with folders resolved against the YAML's folder.

    ``path`` is the YAML file or a folder holding ``config.yaml`` / ``data.yaml``.
    """
    path = Path(path)
    if path.is_dir():
        found = [path / n for n in ("config.yaml", "data.yaml", "dataset.yaml") if (path / n).is_file()]
        if not found:
            raise FileNotFoundError(f"no config.yaml / data.yaml / dataset.yaml in {path}")
        path = found[0]
    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"cannot read dataset YAML {path}: {err}") from None
    if not isinstance(cfg, dict) or "classes" not in cfg:
        raise ValueError(f"dataset YAML {path} needs a 'classes: {{id: name}}' mapping")
    classes = cfg["classes"]
    if isinstance(classes, list):
        classes = dict(enumerate(classes))
    splits = {}
    for name, entry in cfg.items():
        if isinstance(entry, dict) and "images" in entry and "masks" in entry:
            splits[name] = ((path.parent / entry["images"]).resolve(), (path.parent / entry["masks"]).resolve())
    if not splits:
        raise ValueError(f"dataset YAML {path} has no split with 'images' and 'masks' folders")
    return {"splits": splits, "classes": {int(k): str(v) for k, v in classes.items()}, "path": path}


class SegmentationDataset(Dataset):
    """Reads pairs, decodes masks, checks sizes, applies an albumentations transform.

    Item: ``{"image": float32 [C, H, W], "mask": int64 [H, W] (absent without a mask file),
    "id": str (image path), "size": (H, W) of the transformed image}``.

    A mask whose size differs from its image raises a :class:`MaskError` naming both files, unless
    ``resize_mismatched_masks`` (then the mask is resized with nearest-neighbour).
    """

    def __init__(
        self,
        samples: Sequence[SegmentationSample],
        decoder: MaskDecoder,
        transform: Callable[..., dict[str, Any]],
        resize_mismatched_masks: bool = False,
        in_chans: int = 3,
    ) -> None:
        self.samples = list(samples)
        self.decoder = decoder
        self.transform = transform
        self.resize_mismatched_masks = resize_mismatched_masks
        self.in_chans = in_chans

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The raw pair: ``uint8 [H, W, C]`` and ``int64 [H, W]`` class indices (or ``None``)."""
        s = self.samples[i]
        image = read_image(s.image, self.in_chans)
        if s.mask is None:
            return image, None
        mask = self.decoder.read(s.mask)
        if mask.shape != image.shape[:2]:
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
        item: dict[str, Any] = {"image": img, "id": str(self.samples[i].image), "size": tuple(img.shape[-2:])}
        if mask is not None:
            item["mask"] = torch.from_numpy(np.ascontiguousarray(out["mask"])).long()
        return item


def pad_collate(ignore_index: int = 255) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """A collate function padding images (with 0, the normalised mean) and masks (with
    ``ignore_index``) at the bottom/right to the largest size in the batch; ``size`` keeps each
    image's own size so predictions can be cropped back. Written here because torch's default
    collate needs equal sizes and evaluation runs at each image's own resolution."""

    def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
        h = max(it["image"].shape[-2] for it in items)
        w = max(it["image"].shape[-1] for it in items)
        images = torch.zeros(len(items), items[0]["image"].shape[0], h, w)
        batch: dict[str, Any] = {"id": [it["id"] for it in items], "size": [it["size"] for it in items]}
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

