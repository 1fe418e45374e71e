"""``SegmentationDataModule``: one datamodule for every segmentation layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from torch.utils.data import DataLoader

from visiontasks.errors import InvalidInputError, MissingFileError
from visiontasks.preprocessing import Preprocessing

from ..base import VisionDataModule, check_sizes
from ..cache import CacheField, ImageCache, build_image_cache
from ..check import CheckPlan
from ..streaming import FromStored, StreamSpec
from ..io import IMAGENET_MEAN, IMAGENET_STD, image_size, list_image_files
from .dataset import SegmentationDataset, pad_collate
from .masks import MaskDecoder
from ..synthetic import writer_settings
from .readers import SEGMENTATION_READERS, ReaderOptions, SegmentationSample
from .synthetic import write_synthetic_segmentation
from .transforms import segmentation_eval_transforms, segmentation_train_transforms


class SegmentationDataModule(VisionDataModule):
    """Image + mask data for semantic segmentation.

    Batches are ``{"image": float [N, C, H, W], "mask": int64 [N, H, W], "id": [paths],
    "size": [(H, W)], "orig_size": [(H, W) of each file]}``; masks hold ``0..num_classes-1`` or
    ``ignore_index``. Evaluation batches are padded to the largest image (masks with
    ``ignore_index``), training batches are cropped to ``crop_size``.

    Args:
        root: the dataset folder. ``folder``: ``root/<image_dir>/<split>/`` and
            ``root/<mask_dir>/<split>/`` (same relative names, masks ``*<mask_suffix>``);
            ``voc``: the ``VOC20xx`` folder; ``dataset_yaml``: the YAML file or its folder
            (``<split>: {images, masks}`` + ``classes: {id: name}``, e.g. COCO128-segmentation);
            ``synthetic``: where the generated shapes set is written (folder layout).
        format: the reader's name in ``SEGMENTATION_READERS``: ``folder``, ``voc``,
            ``dataset_yaml`` or ``synthetic``.
        class_names / num_classes: the classes (``folder`` needs one of them; VOC, YAML and
            synthetic sets bring their own names).
        ignore_index: label for pixels left out of loss and metrics (VOC's border value 255).
        mask_mode: ``index`` (one id per pixel: L/P/16-bit PNGs) or ``color`` (RGB via
            ``class_colors``: one ``[r, g, b]`` per class, or ``voc``; ``ignore_colors`` -> ignore).
        remap: ``raw id -> class index`` or ``"ignore"`` (sparse -> contiguous, merges, ignores).
        ignore_ids: raw ids mapped to ``ignore_index`` (e.g. ``[0]`` for COCO "unlabeled").
            With ``dataset_yaml`` the other ids of ``classes`` are numbered 0.. in sorted order.
        unmapped: ids or colours not in the tables: ``error`` (default) or ``ignore``.
        resize_mismatched_masks: resize a mask whose size differs from its image with
            nearest-neighbour instead of raising an error naming both files.
        skip_missing_masks: leave out images without a mask (one warning with the count) instead
            of raising an error.
        train_split / val_split / test_split: split names (sub-folders / VOC lists / YAML keys);
            a missing test split falls back to val. ``val_fraction`` > 0 carves a seeded
            validation set out of train when there is no val split.
        crop_size, scale_range, hflip, color_jitter: training augmentation (see
            :func:`segmentation_train_transforms`). mean / std: normalisation.
        synthetic: the generated set of ``format: synthetic`` (keyword arguments of
            :func:`~visiontasks.data.segmentation.write_synthetic_segmentation`: ``counts`` (train,
            val, test; default ``[300, 100, 100]``), ``image_size`` (128), ``num_shapes`` (6 shape
            kinds, i.e. 7 classes with the background), ``max_objects`` (3), ``size_range``
            (``[0.15, 0.35]``), ``seed`` (default: the datamodule's ``seed``)), as detection's
            ``synthetic``.
        predict_root: a folder of images to predict on (default: the test split's images).
        in_chans: 1 or 3 image channels.
        check: read every image and mask before training and stop with one error listing the
            problems (the check of ``visiontasks check``; see :mod:`visiontasks.data.check`).
        num_workers: loader processes; ``auto`` (default): see
            :func:`~visiontasks.data.base.resolve_num_workers` (with a GPU the cores minus one, at
            most 8; on a CPU run a quarter of the cores, which the model needs).
        cache: ``auto`` (default: ``ram`` when the decoded split fits comfortably in memory, else
            ``none``), ``none``, ``ram`` or ``disk`` (see :mod:`visiontasks.data.cache`): each image and its
            decoded class-index mask (colour tables and remapping applied) are stored once. At the
            file's resolution, not shrunk: the training scale range is relative to the file and
            evaluation scores at the file's resolution, so any shrinking would change both.
        cache_dir: where ``disk`` writes (default ``~/.cache/visiontasks/images``).
        streaming: a folder or object-store URL written by ``visiontasks optimize-data`` from this
            config: every split is read from its litdata chunks (images and decoded masks) instead
            of the files (see :mod:`visiontasks.data.streaming`).
    """

    def __init__(
        self,
        root: str = "data/shapes_segmentation",
        format: str = "folder",
        class_names: list[str] | None = None,
        num_classes: int | None = None,
        ignore_index: int = 255,
        image_dir: str = "images",
        mask_dir: str = "masks",
        mask_suffix: str = ".png",
        mask_mode: Literal["index", "color"] = "index",
        class_colors: list[list[int]] | str | None = None,
        ignore_colors: list[list[int]] | None = None,
        remap: dict[int, int | str] | None = None,
        ignore_ids: list[int] | None = None,
        unmapped: Literal["error", "ignore"] = "error",
        resize_mismatched_masks: bool = False,
        skip_missing_masks: bool = False,
        train_split: str = "train",
        val_split: str | None = "val",
        test_split: str | None = "test",
        val_fraction: float = 0.0,
        crop_size: int | list[int] | None = 256,
        scale_range: tuple[float, float] = (0.5, 2.0),
        hflip: bool = True,
        color_jitter: float = 0.0,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        synthetic: dict[str, Any] | None = None,
        predict_root: str | None = None,
        in_chans: int = 3,
        batch_size: int = 8,
        seed: int = 0,
        **loader: Any,
    ) -> None:
        super().__init__(batch_size, **loader)
        check_sizes(crop_size=crop_size)
        # num_classes is the model's hyper-parameter too (Lightning refuses differing duplicates)
        self.save_hyperparameters(ignore=["num_classes"])
        reader_class = SEGMENTATION_READERS.get(format)  # an unknown format lists the available ones
        if not 0 <= val_fraction < 1:
            raise InvalidInputError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.root = Path(root)
        self.format = format
        self.ignore_index = ignore_index
        self.seed = seed
        self.in_chans = in_chans
        synthetic = {"seed": seed, **writer_settings(write_synthetic_segmentation, synthetic, "data.init_args.synthetic")}
        options = ReaderOptions(image_dir, mask_dir, mask_suffix, skip_missing_masks, synthetic)
        self.reader = reader_class(self.root, options)
        if self.streaming:  # the masks in the chunks are class indices already: no table to read
            self.class_names, remap = list(self.stream_info()["class_names"]), None
        else:
            self.class_names, remap = self._classes(class_names, num_classes, remap, ignore_ids)
        self.decoder = MaskDecoder(
            self.num_classes, ignore_index, mask_mode, class_colors, ignore_colors, remap, unmapped
        )
        self.train_transform = segmentation_train_transforms(
            crop_size, scale_range, hflip, color_jitter, ignore_index, mean, std
        )
        self.eval_transform = segmentation_eval_transforms(mean, std)
        self.datasets: dict[str, SegmentationDataset] = {}

    # -- classes ------------------------------------------------------------------------------------
    def _classes(
        self,
        class_names: list[str] | None,
        num_classes: int | None,
        remap: dict[int, int | str] | None,
        ignore_ids: list[int] | None,
    ) -> tuple[list[str], dict[int, int | str] | None]:
        ignore_ids = list(ignore_ids or [])
        user_remap = remap is not None
        names, default_remap = self.reader.class_table(ignore_ids)
        if names is None:  # the layout has no class table: the config gives the classes
            if class_names is not None:
                names = list(class_names)
            elif num_classes is not None:
                names = [str(i) for i in range(num_classes)]
            else:
                raise InvalidInputError(f"format {self.format!r} needs class_names (or num_classes) in the data config")
        else:
            if remap is None:
                remap = default_remap
            if class_names is not None:
                if len(class_names) != len(names) and not user_remap:
                    raise InvalidInputError(
                        f"class_names has {len(class_names)} names but the {self.format} data has "
                        f"{len(names)} classes; give a remap table when merging or dropping classes"
                    )
                names = list(class_names)  # the user's names win (e.g. after merging classes with remap)
        if num_classes is not None and num_classes != len(names):
            raise InvalidInputError(f"num_classes={num_classes} but the classes are {len(names)}: {names[:10]}")
        if ignore_ids:
            if remap is None:
                remap = {i: i for i in range(len(names))}
            remap = {**remap, **{i: "ignore" for i in ignore_ids}}
        return names, remap

    # -- files ----------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Make the files exist (a synthetic set is written once: rank 0 of each node under DDP)."""
        if not self.streaming:
            self.reader.prepare()

    def split_samples(self, split: str | None) -> list[SegmentationSample] | None:
        """The pairs of ``split``, or ``None`` when the dataset has no such split."""
        return None if split is None else self.reader.samples(split)

    def check_plan(self) -> CheckPlan:
        from .check import segmentation_plan

        return segmentation_plan(self)

    def setup(self, stage: str | None = None) -> None:
        if self.streaming:
            return  # the loaders read the chunks; no file is read
        self.reader.prepare()  # no-op when prepare_data already did it
        self.check_before(stage)
        hp = self.hparams
        make = lambda s, t: SegmentationDataset(s, self.decoder, t, hp.resize_mismatched_masks, hp.in_chans)  # noqa: E731
        need_val = stage == "validate" and "val" not in self.datasets
        if need_val:
            val = self.split_samples(hp.val_split)
            if val is not None:  # validating alone needs no training files
                self.datasets["val"] = make(val, self.eval_transform)
                need_val = False
        if need_val or (stage in (None, "fit") and "train" not in self.datasets):
            train = self.split_samples(hp.train_split)
            if train is None:
                raise MissingFileError(f"{self.root}: no {hp.train_split!r} split ({self.reader.layout_hint()})")
            val = self.split_samples(hp.val_split)
            if val is None and hp.val_fraction > 0:
                order = np.random.default_rng(self.seed).permutation(len(train))
                n_val = max(1, int(round(hp.val_fraction * len(train))))
                val = [train[i] for i in sorted(order[:n_val])]
                train = [train[i] for i in sorted(order[n_val:])]
            if val is None:
                raise MissingFileError(
                    f"{self.root}: no {hp.val_split!r} split; add one or set val_fraction (e.g. 0.1)"
                )
            self.datasets["train"] = make(train, self.train_transform)
            self.datasets["val"] = make(val, self.eval_transform)
        if stage in (None, "test") and "test" not in self.datasets:
            test = self.split_samples(hp.test_split) or self.split_samples(hp.val_split)
            if test is None:
                raise MissingFileError(f"{self.root}: neither a {hp.test_split!r} nor a {hp.val_split!r} split")
            self.datasets["test"] = make(test, self.eval_transform)
        if stage in (None, "predict") and "predict" not in self.datasets:
            if hp.predict_root is not None:
                images = list_image_files(hp.predict_root, recursive=True)
                if not images:
                    raise MissingFileError(f"predict_root {hp.predict_root} holds no images")
                samples = [SegmentationSample(p, None) for p in images]
            else:
                pairs = self.split_samples(hp.test_split) or self.split_samples(hp.val_split) or []
                samples = [SegmentationSample(s.image, None) for s in pairs]
                if not samples:
                    raise MissingFileError(f"{self.root}: nothing to predict on; set predict_root")
            self.datasets["predict"] = make(samples, self.eval_transform)

    # -- loaders ---------------------------------------------------------------------------------------
    def preprocessing(self) -> Preprocessing:
        """Evaluation preprocessing (saved in checkpoints): each image at its own size, normalised."""
        hp = self.hparams
        return Preprocessing("none", None, tuple(hp.mean), tuple(hp.std), self.in_chans)

    def loader(self, stage: str) -> DataLoader:
        if self.streaming:
            return self.make_stream_loader(stage, self.stage_batch_size(stage), pad_collate(self.ignore_index), self.seed,
                                           drop_last=stage == "train")
        if stage not in self.datasets:
            self.setup({"train": "fit", "val": "fit"}.get(stage, stage))
        shuffle = stage == "train"
        batch_size = self.stage_batch_size(stage)
        dataset = self.datasets[stage]
        dataset.cache = self.cache_once(f"{stage}:{id(dataset)}", lambda: self._build_cache(stage, dataset))
        return self.make_loader(
            dataset, batch_size, shuffle=shuffle, collate_fn=pad_collate(self.ignore_index),
            drop_last=shuffle and len(dataset) > batch_size,
        )

    def _cache_fields(self, with_masks: bool) -> list[CacheField]:
        """The image, and the class-index mask as ``uint8`` when every class id and the ignore index fit, else int32."""
        fields = [CacheField("image", "uint8", self.in_chans)]
        if with_masks:
            small = 0 <= self.ignore_index <= 255 and self.num_classes <= 256
            fields.append(CacheField("mask", "uint8" if small else "int32"))
        return fields

    def _cache_parts(self, dataset: SegmentationDataset, with_masks: bool) -> tuple[list[CacheField], Any, Any]:
        """``(fields, plan, decode)`` of a split's pairs as the image cache and the streaming chunks
        hold them: at the files' resolution, masks decoded to class indices."""
        samples = dataset.samples

        def plan(i: int) -> tuple[tuple[int, int], tuple[int, int]]:
            w, h = image_size(samples[i].image)
            return (h, w), (h, w)

        def decode(i: int, size: tuple[int, int]) -> dict:
            image, mask = dataset.load(i)
            return {"image": image} if mask is None else {"image": image, "mask": mask}

        return self._cache_fields(with_masks), plan, decode

    def _decode_settings(self) -> dict[str, Any]:
        hp = self.hparams
        settings = {k: hp[k] for k in ("mask_mode", "class_colors", "ignore_colors", "remap", "ignore_ids",
                                        "unmapped", "ignore_index", "resize_mismatched_masks", "in_chans")}
        settings["classes"] = self.num_classes
        return settings

    # -- streaming ------------------------------------------------------------------------------------
    def stream_spec(self, split: str) -> StreamSpec | None:
        """The split's pairs as the cache holds them (the image and its class-index mask at the file's
        resolution), each with its :class:`SegmentationSample`."""
        if split not in self.datasets:
            try:
                self.setup("fit" if split in ("train", "val") else "test")
            except MissingFileError:
                return None
        dataset = self.datasets[split]
        with_masks = all(s.mask is not None for s in dataset.samples)
        fields, plan, decode = self._cache_parts(dataset, with_masks)
        return StreamSpec(len(dataset), fields, plan, decode, lambda i: dataset.samples[i])

    def stream_item(self, stage: str) -> FromStored:
        hp = self.hparams
        transform = self.train_transform if stage == "train" else self.eval_transform

        def make(sample: SegmentationSample, cache: ImageCache) -> SegmentationDataset:
            return SegmentationDataset([sample], self.decoder, transform, hp.resize_mismatched_masks, hp.in_chans, cache)

        return FromStored(make, self._cache_fields(True), transform)

    def stream_settings(self) -> dict[str, Any]:
        return {"family": "segmentation", **self._decode_settings()}

    def _build_cache(self, stage: str, dataset: SegmentationDataset) -> ImageCache | None:
        """The split's pairs decoded once into an image cache (``cache: auto | ram | disk``), at the
        files' resolution; masks as ``uint8`` when every class id and the ignore index fit, else int32."""
        samples = dataset.samples
        with_masks = any(s.mask is not None for s in samples)
        if with_masks and any(s.mask is None for s in samples):
            return None  # mixed pairs: no reader makes them (the batches refuse them anyway)
        fields, plan, decode = self._cache_parts(dataset, with_masks)
        settings = self._decode_settings()
        files = [p for s in samples for p in (s.image, s.mask) if p is not None]
        return build_image_cache(
            self.cache, len(samples), files, fields, plan, decode, settings, f"segmentation-{stage}", self.cache_dir,
            processes=self.local_processes(),
        )
