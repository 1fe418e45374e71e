"""The data check of a segmentation layout: every (image, mask) pair decoded, the mask with the
datamodule's own :class:`~visiontasks.data.segmentation.masks.MaskDecoder` (so unknown ids and
colours are found as training would find them), sizes compared, pixels counted per class."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..check import CheckPlan, Problem, SampleInfo, collect, read_checked
from .masks import MaskDecoder, MaskError

if TYPE_CHECKING:
    from .datamodule import SegmentationDataModule


@dataclass
class MaskJob:
    """Decode one image and its mask; ``mask_counts``: pixels per class, the last entry ignored ones."""

    split: str
    path: str
    mask: str
    decoder: MaskDecoder
    resize_mismatched: bool = False
    channels: int = 3

    def __call__(self) -> SampleInfo:
        info = SampleInfo(self.split, self.path)
        image = read_checked(info, self.channels)
        try:
            mask = self.decoder.read(self.mask)
        except MaskError as err:
            what = str(err).replace(f"mask {self.mask} ", "").replace(f"mask file {self.mask} ", "")
            todo = "" if ";" in what else "fix the mask, or the data's remap / ignore_ids / class table"
            info.problem("error", what, todo, file=self.mask)
            return info
        k = self.decoder.num_classes
        ids = np.where(mask == self.decoder.ignore_index, k, mask).ravel()
        info.mask_counts = np.bincount(ids, minlength=k + 1)[: k + 1].astype(np.int64)
        if image is not None and tuple(mask.shape) != info.size:
            (mh, mw), (h, w) = mask.shape, info.size
            if self.resize_mismatched:
                info.problem("warning", f"mask is {mw}x{mh} but its image {self.path} is {w}x{h}; it is resized",
                             file=self.mask)
            else:
                info.problem("error", f"mask is {mw}x{mh} but its image {self.path} is {w}x{h}",
                             "fix the mask (or set resize_mismatched_masks: true)", file=self.mask)
        return info


def segmentation_plan(dm: SegmentationDataModule) -> CheckPlan:
    """The pairs of the train, val and test splits (each distinct split once); images without a
    mask are an error unless ``skip_missing_masks`` (then a warning)."""
    hp = dm.hparams
    dm.reader.prepare()
    # list leniently: images without masks become problems instead of ending the listing
    options = dataclasses.replace(dm.reader.options, skip_missing_masks=True)
    reader = type(dm.reader)(dm.root, options)
    plan = CheckPlan("segmentation", dm.class_names, ignore_index=dm.ignore_index)
    seen: set[str] = set()
    for stage, split in (("train", hp.train_split), ("val", hp.val_split), ("test", hp.test_split)):
        if split is None or split in seen:
            continue
        seen.add(split)
        samples, problems = collect(lambda s=split: reader.samples(s), str(dm.root), stage)
        for p in problems:  # the readers warn only about images without masks
            if p.severity == "warning" and "no mask" in p.what and not hp.skip_missing_masks:
                p.severity, p.todo = "error", "add the masks, or set skip_missing_masks: true"
        plan.problems += problems
        if samples is None and not any(p.severity == "error" for p in problems):
            needed = stage == "train" or (stage == "val" and hp.val_fraction == 0)
            if needed:
                plan.problems.append(Problem(
                    "error", str(dm.root), f"no {split!r} split ({reader.layout_hint()})",
                    "add it" + (" or set val_fraction (e.g. 0.1)" if stage == "val" else ""), split=stage))
            continue
        plan.splits.append(stage)
        plan.jobs += [MaskJob(stage, str(s.image), str(s.mask), dm.decoder, hp.resize_mismatched_masks, hp.in_chans)
                      for s in samples or [] if s.mask is not None]
    return plan
