"""``DetectionDataModule``: COCO JSON, Pascal VOC XML or YOLO txt data for every detector."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from visiontasks.data.io import IMAGE_EXTENSIONS, check_images

from .coco import read_coco
from .common import DetectionRecord, DetectionSplit, safe_join
from .dataset import DetectionDataset, detection_collate, worker_init_fn
from .synthetic import write_synthetic_detection
from .transforms import IMAGENET_MEAN, IMAGENET_STD, AugmentConfig, build_detection_transform
from .voc import VOC_CLASSES, read_voc
from .yolo import find_yaml, load_yolo_yaml, read_yolo

FORMATS = ("coco", "voc", "yolo")
STAGES = ("train", "val", "test", "predict")


class DetectionDataModule(pl.LightningDataModule):
    """Detection data in one of three formats, as ``(list of images, list of targets)`` batches.

    Args:
        format: ``"coco"``, ``"voc"`` or ``"yolo"``.
        root: the dataset root: COCO/VOC folder; for YOLO the dataset YAML or its folder.
        train, val, test, predict: the split read for each stage (``None``: not available; ``predict``
            defaults to ``test``, then ``val``). COCO: a name ``S`` meaning
            ``{annotations: annotations/instances_S.json, images: images/S}``, or such a dict.
            VOC: an ``ImageSets/Main`` list name (``trainval``) or a ``.txt`` path in the root.
            YOLO: a key of the dataset YAML (``train``, ``val``, ``test``). Any format: a dict
            ``{images: folder}`` reads a plain image folder without annotations (for predict).
        class_names: VOC's class list (default: the 20 VOC classes); for COCO/YOLO, when given, it
            must equal the names in the files.
        image_size: target ``H`` or ``(H, W)`` for ``resize``; for ``shortest_edge`` ``(min, max)``.
        resize: ``letterbox`` (keep aspect, pad), ``stretch``, ``shortest_edge`` (shorter side to
            ``min`` unless the longer exceeds ``max``, as torchvision's 800/1333) or ``none``; with
            the last two the sizes in a batch differ and the detectors pad them.
        augment: training augmentation on/off; ``hflip``, ``scale``, ``translate``, ``color_jitter``
            set its strength.
        mean, std: normalisation of the 0..1 pixel values (ImageNet by default).
        min_box_size: boxes narrower or shorter than this (pixels, after transforms) are dropped.
        keep_difficult: keep VOC objects marked ``difficult``.
        skip_bad_images: check every image at setup and skip unreadable ones (one warning with the
            count); otherwise an unreadable image raises an error naming it when it is loaded.
        synthetic: generate the synthetic shapes dataset into ``root`` in ``format`` first (kwargs of
            :func:`write_synthetic_detection`, e.g. ``{splits: {train: 200, val: 50}, image_size: 128,
            num_classes: 3}``); reused when present with the same settings.
        proposals: region proposals for R-CNN / Fast R-CNN: kwargs of
            ``visiontasks.data.proposals.ProposalCache`` (``cache_dir`` defaults to
            ``<root>/proposals``); targets then carry ``proposals``.
        batch_size, eval_batch_size: per-process batch sizes (eval defaults to ``batch_size``).
        num_workers, pin_memory, seed: loader settings; ``seed`` seeds the augmentation stream.

    Background (no object) is never a label here: ``labels`` are 0-based real classes and each
    model adds its own background internally (see :mod:`visiontasks.heads.detector`).
    """

    def __init__(
        self,
        format: str = "coco",
        root: str = "data/shapes_detection",
        train: str | dict[str, str] | None = "train",
        val: str | dict[str, str] | None = "val",
        test: str | dict[str, str] | None = None,
        predict: str | dict[str, str] | None = None,
        class_names: list[str] | None = None,
        image_size: int | list[int] | None = 448,
        resize: str = "letterbox",
        augment: bool = True,
        hflip: float = 0.5,
        scale: tuple[float, float] = (0.75, 1.25),
        translate: float = 0.1,
        color_jitter: float = 0.3,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        min_box_size: float = 1.0,
        keep_difficult: bool = False,
        skip_bad_images: bool = False,
        synthetic: dict[str, Any] | None = None,
        proposals: dict[str, Any] | None = None,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
        self.save_hyperparameters()
        self.format = format
        self.root = Path(root)
        self.split_specs = {"train": train, "val": val, "test": test, "predict": predict}
        self.image_size = image_size
        self.resize = resize
        self.augment = AugmentConfig(hflip=hflip, scale=tuple(scale), translate=translate,
                                     color_jitter=color_jitter) if augment else None
        self.mean, self.std = tuple(mean), tuple(std)
        self.min_box_size = min_box_size
        self.keep_difficult = keep_difficult
        self.skip_bad_images = skip_bad_images
        self.synthetic = dict(synthetic) if synthetic else None
        self.proposals = dict(proposals) if proposals else None
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.seed = seed
        self._given_names = list(class_names) if class_names else None
        self.class_names: list[str] = []
        self.category_ids: list[int] = []
        self.splits: dict[str, DetectionSplit] = {}
        self.datasets: dict[str, DetectionDataset] = {}
        self._init_class_names()

    # -- classes ----------------------------------------------------------------------------------
    def _init_class_names(self) -> None:
        """Class names known without reading annotations: synthetic, VOC, given, or a YOLO YAML."""
        if self.synthetic is not None:
            from .synthetic import synthetic_class_names

            names = synthetic_class_names(int(self.synthetic.get("num_classes", 3)))
            self._set_names(names, list(range(1, len(names) + 1)) if self.format == "coco"
                            else list(range(len(names))))
        elif self.format == "voc":
            names = self._given_names or list(VOC_CLASSES)
            self._set_names(names, list(range(len(names))))
        elif self.format == "yolo" and self.root.exists():
            _, _, names = load_yolo_yaml(find_yaml(self.root))
            self._set_names(names, list(range(len(names))))
        elif self._given_names:
            self._set_names(self._given_names, list(range(len(self._given_names))))

    def _set_names(self, names: list[str], category_ids: list[int]) -> None:
        if self._given_names and self.format != "voc" and list(names) != self._given_names:
            raise ValueError(
                f"class_names {self._given_names[:5]}... do not match the dataset's {list(names)[:5]}..."
            )
        self.class_names, self.category_ids = list(names), list(category_ids)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # -- reading ----------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Generate the synthetic dataset (once, on one process per node)."""
        if self.synthetic is not None:
            self._write_synthetic()

    def _write_synthetic(self) -> None:
        kwargs = dict(self.synthetic)
        kwargs.setdefault("splits", {"train": 200, "val": 50})
        write_synthetic_detection(self.root, self.format, **kwargs)

    def _read_split(self, stage: str) -> DetectionSplit | None:
        spec = self.split_specs[stage]
        if spec is None and stage == "predict":
            spec = self.split_specs["test"] or self.split_specs["val"]
        if spec is None:
            return None
        name = f"{self.format} {stage} ({self.root})"
        if isinstance(spec, dict) and set(spec) == {"images"}:
            return self._read_folder(spec["images"], name)
        if self.format == "coco":
            if isinstance(spec, str):
                spec = {"annotations": f"annotations/instances_{spec}.json", "images": f"images/{spec}"}
            if set(spec) != {"annotations", "images"}:
                raise ValueError(f"COCO split {stage}: expected keys annotations and images, got {sorted(spec)}")
            ann = safe_join(self.root, spec["annotations"], f"{stage} split")
            split = read_coco(ann, spec["images"], self.root, name=name)
        elif self.format == "voc":
            split = read_voc(self.root, str(spec), self.class_names or None, self.keep_difficult, name=name)
        else:
            split = read_yolo(self.root, str(spec), name=name)
        if self.class_names and split.class_names != self.class_names:
            raise ValueError(
                f"{name}: class names {split.class_names[:5]}... differ from {self.class_names[:5]}..."
            )
        if not self.class_names:
            self._set_names(split.class_names, split.category_ids)
        elif self.format == "coco":
            self.category_ids = split.category_ids
        return split

    def _read_folder(self, folder: str, name: str) -> DetectionSplit:
        import numpy as np

        path = safe_join(self.root, folder, f"{name} images")
        files = sorted(f for f in path.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise FileNotFoundError(f"{name}: no images in {path}")
        records = [DetectionRecord(f, i, np.zeros((0, 4), np.float32), np.zeros(0, np.int64)) for i, f in enumerate(files)]
        return DetectionSplit(name, records, self.class_names, self.category_ids)

    def setup(self, stage: str | None = None) -> None:
        if self.synthetic is not None and not (self.root / "synthetic.json").is_file():
            self._write_synthetic()  # setup() called without prepare_data()
        required = {"fit": ("train",), "validate": ("val",), "test": ("test",), "predict": ("predict",)}
        wanted = {"fit": ("train", "val")}.get(stage or "", required.get(stage or "", STAGES))
        for split_stage in wanted:
            if split_stage in self.datasets:
                continue
            split = self._read_split(split_stage)
            if split is None:
                if split_stage in required.get(stage or "", ()):
                    raise ValueError(f"stage {stage!r} needs the {split_stage!r} split; set data.{split_stage}")
                continue
            if self.skip_bad_images:
                good, _ = check_images([r.path for r in split.records], True, what=split.name)
                split.records = [split.records[i] for i in good]
            self.splits[split_stage] = split
            train = split_stage == "train"
            transform = build_detection_transform(
                self.image_size, self.resize, train=train and self.augment is not None,
                augment=self.augment, mean=self.mean, std=self.std, seed=self.seed,
            )
            self.datasets[split_stage] = DetectionDataset(
                split.records, transform, self._proposal_source(split_stage, split), self.min_box_size
            )

    def _proposal_source(self, stage: str, split: DetectionSplit) -> Any:
        if self.proposals is None:
            return None
        from visiontasks.data.proposals import ProposalCache

        kwargs = dict(self.proposals)
        cache_dir = kwargs.pop("cache_dir", None) or (self._dataset_root() / "proposals")
        cache = ProposalCache(split=stage, image_paths=[r.path for r in split.records],
                              cache_dir=cache_dir, **kwargs)
        cache.ensure()
        return cache

    def _dataset_root(self) -> Path:
        if self.format == "yolo":
            return load_yolo_yaml(find_yaml(self.root))[1]
        return self.root

    # -- loaders ----------------------------------------------------------------------------------
    def _loader(self, stage: str, shuffle: bool) -> DataLoader:
        if stage not in self.datasets:
            self.setup({"train": "fit", "val": "validate"}.get(stage, stage))
        if stage not in self.datasets:
            raise ValueError(f"no {stage!r} split configured (set data.{stage})")
        return DataLoader(
            self.datasets[stage],
            batch_size=self.batch_size if stage == "train" else self.eval_batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=detection_collate,
            pin_memory=self.pin_memory,
            worker_init_fn=worker_init_fn,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", shuffle=False)
