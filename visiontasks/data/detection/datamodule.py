"""``DetectionDataModule``: detection data of any registered format (COCO JSON, Pascal VOC XML, YOLO
txt, ...) for every detector; the format's reader comes from :data:`DETECTION_READERS`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from torch.utils.data import DataLoader

from visiontasks.data.base import VisionDataModule, check_sizes
from visiontasks.data.check import CheckPlan
from visiontasks.data.io import IMAGENET_MEAN, IMAGENET_STD, check_images, list_image_files
from visiontasks.data.synthetic import STAMP
from visiontasks.errors import InvalidInputError, MissingFileError
from visiontasks.preprocessing import Preprocessing, pair

from .common import DetectionRecord, DetectionSplit, safe_join
from ..streaming import FromStored, StreamSpec
from .dataset import DetectionDataset, detection_cache_parts, detection_collate, detection_image_cache, worker_init_fn
from .reader import DETECTION_READERS
from .keypoints import KeypointSpec
from .synthetic import synthetic_class_names, synthetic_keypoint_spec, write_synthetic_detection
from .transforms import AugmentConfig, build_detection_transform

STAGES = ("train", "val", "test", "predict")


class DetectionDataModule(VisionDataModule):
    """Detection data in one of the registered formats, as ``(list of images, list of targets)`` batches.

    Args:
        format: the reader's name in :data:`DETECTION_READERS`: ``"coco"``, ``"voc"`` or ``"yolo"``.
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
        masks: read instance masks too (COCO ``segmentation`` polygons/RLE, YOLO polygon labels, the
            synthetic shapes' exact masks): targets then carry ``masks`` uint8 ``[K, H, W]`` in the
            transformed image's pixels (for Mask R-CNN). Off: masks are neither read nor decoded.
        keypoints: read each object's keypoints too (COCO person-keypoints ``keypoints`` triples, YOLO
            pose labels with the YAML's ``kpt_shape``, the synthetic corner shapes): targets then
            carry ``keypoints`` float32 ``[K, P, 3]`` (x, y, v) in the transformed image's pixels
            (``v`` 0 not labelled or moved out of the image, then x = y = 0; 1 labelled, hidden; 2
            visible), and ``num_keypoints``, ``keypoint_names``, ``skeleton`` (0-based pairs),
            ``flip_idx`` and ``keypoint_sigmas`` say what the points are (for Keypoint R-CNN). The
            training flip swaps mirror points by ``flip_idx``; a data set with a skeleton (or
            left/right names) but no ``flip_idx`` refuses ``hflip > 0`` (see docs/keypoints.md).
        skip_bad_images: check every image at setup and skip unreadable ones (one warning with the
            count); otherwise an unreadable image raises an error naming it when it is loaded.
        skip_bad_labels: leave out bad label lines (YOLO: non-numeric, unknown class id, coordinates
            NaN, negative or above 1) with one warning and their count; otherwise the first one is an
            error naming its file and line.
        synthetic: generate the synthetic shapes dataset into ``root`` in ``format`` first (kwargs of
            :func:`write_synthetic_detection`, e.g. ``{splits: {train: 200, val: 50}, image_size: 128,
            num_classes: 3}``; with ``keypoints: true`` also ``num_keypoints`` 3 or 4,
            ``max_rotation``, ``keypoint_sigma``); reused when present with the same settings.
        proposals: region proposals for R-CNN / Fast R-CNN: kwargs of
            ``visiontasks.data.proposals.ProposalCache`` (``cache_dir`` defaults to
            ``<root>/proposals``); targets then carry ``proposals``.
        batch_size, eval_batch_size: per-process batch sizes (eval defaults to ``batch_size``).
        num_workers, pin_memory, seed: loader settings; ``seed`` seeds the augmentation stream.
        check: read every image and annotation before training and stop with one error listing
            the problems (the check of ``visiontasks check``; see :mod:`visiontasks.data.check`).
            ``num_workers: auto`` (default): with a GPU the cores minus one, at most 8, on a CPU
            run a quarter of the cores (:func:`~visiontasks.data.base.resolve_num_workers`);
            ``pin_memory`` (default ``None``): pinned when the trainer runs on a CUDA device.
        cache: ``auto`` (default: ``ram`` when the decoded split fits comfortably in memory, else
            ``none``), ``none``, ``ram`` or ``disk`` (see :mod:`visiontasks.data.cache`): each image decoded
            once, shrunk to what the pipeline can use (the resize target times the largest
            training scale), boxes and proposals scaled with it; predictions still map back to the
            file's pixels (``orig_size`` and ``image_box`` keep the file's frame).
        cache_dir: where ``disk`` writes (default ``~/.cache/visiontasks/images``).
        streaming: a folder or object-store URL written by ``visiontasks optimize-data`` from this
            config: every split is then read from its litdata chunks (the cached images with their
            records), not from ``root`` (see :mod:`visiontasks.data.streaming`). Not with ``proposals``.

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
        masks: bool = False,
        keypoints: bool = False,
        skip_bad_images: bool = False,
        skip_bad_labels: bool = False,
        synthetic: dict[str, Any] | None = None,
        proposals: dict[str, Any] | None = None,
        batch_size: int = 8,
        seed: int = 0,
        **loader: Any,
    ) -> None:
        super().__init__(batch_size, **loader)
        if self.streaming and proposals:
            raise InvalidInputError("data.init_args.streaming: proposals (R-CNN, Fast R-CNN) are read per image file "
                                    "and cannot be streamed; train those detectors from the files")
        check_sizes(image_size=image_size)
        reader_class = DETECTION_READERS.get(format)  # an unknown format lists the available ones
        self.save_hyperparameters()
        self.format = format
        self.root = Path(root)
        self.split_specs = {"train": train, "val": val, "test": test, "predict": predict}
        self.reader = reader_class(self.root, self.split_specs, class_names, keep_difficult,
                                   skip_bad_labels=skip_bad_labels, masks=masks, keypoints=keypoints)
        self.masks = masks
        self.keypoints = keypoints
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
        self.seed = seed
        self._given_names = list(class_names) if class_names else None
        self._class_table: tuple[list[str], list[int]] | None = None
        self._keypoint_spec: KeypointSpec | None = None
        self.splits: dict[str, DetectionSplit] = {}
        self.datasets: dict[str, DetectionDataset] = {}

    # -- classes ----------------------------------------------------------------------------------
    def _classes(self) -> tuple[list[str], list[int]]:
        """``(names, dataset ids)``, found once without reading annotations: the synthetic settings,
        the given ``class_names`` (checked against each split when it is read), or the reader's class
        table (VOC: its 20 classes; COCO: the first split's categories; YOLO: the YAML's names)."""
        if self._class_table is None:
            if self.streaming is not None:
                info = self.stream_info()
                names = info["class_names"]
                self._class_table = (list(names), list(info.get("category_ids") or range(len(names))))
                return self._class_table
            if self.synthetic is not None:
                corners = int(self.synthetic.get("num_keypoints", 4)) if self.keypoints else None
                names = synthetic_class_names(int(self.synthetic.get("num_classes", 3)), corners)
                ids = self.reader.written_category_ids(len(names))
            elif self._given_names:
                names, ids = self._given_names, list(range(len(self._given_names)))
            else:
                names, ids = self.reader.class_table()
            if self._given_names and list(names) != self._given_names:
                raise InvalidInputError(
                    f"class_names {self._given_names[:5]}... do not match the dataset's {list(names)[:5]}..."
                )
            self._class_table = (list(names), list(ids))
        return self._class_table

    @property
    def class_names(self) -> list[str]:
        """The class names; label ``k`` is ``class_names[k]``."""
        return self._classes()[0]

    @property
    def category_ids(self) -> list[int]:
        """The dataset's id of each class (COCO category ids; the label itself for VOC and YOLO)."""
        return self._classes()[1]

    # -- keypoints --------------------------------------------------------------------------------
    def keypoint_spec(self) -> KeypointSpec | None:
        """What the data declares about its keypoints (``None`` with ``keypoints: false``), found once
        without reading annotations: the synthetic settings, or the reader's (COCO: the first split's
        categories; YOLO: the YAML)."""
        if self.keypoints and self._keypoint_spec is None:
            if self.synthetic is not None:
                s = self.synthetic
                self._keypoint_spec = synthetic_keypoint_spec(int(s.get("num_keypoints", 4)),
                                                              float(s.get("keypoint_sigma", 0.05)), str(self.root))
            else:
                self._keypoint_spec = self.reader.keypoint_spec()
        return self._keypoint_spec

    @property
    def num_keypoints(self) -> int:
        """``P``, the points of every object (0 with ``keypoints: false``)."""
        spec = self.keypoint_spec()
        return spec.num_keypoints if spec else 0

    @property
    def keypoint_names(self) -> list[str]:
        """The name of each point (``"0".."P-1"`` when the data names none)."""
        spec = self.keypoint_spec()
        return list(spec.names) if spec else []

    @property
    def skeleton(self) -> list[tuple[int, int]]:
        """Pairs of point indices (0-based) to draw as lines; ``[]`` when none is declared."""
        spec = self.keypoint_spec()
        return list(spec.skeleton) if spec else []

    @property
    def flip_idx(self) -> list[int] | None:
        """The mirror point of each point (Ultralytics' ``flip_idx``; from left/right names when not
        declared); ``None`` when the data gives neither."""
        spec = self.keypoint_spec()
        return list(spec.flip_idx) if spec and spec.flip_idx is not None else None

    @property
    def keypoint_sigmas(self) -> list[float]:
        """The OKS sigma of each point: the data's own, else COCO's person sigmas for 17 points, else
        ``1 / P`` each (Ultralytics' rule)."""
        spec = self.keypoint_spec()
        return spec.oks_sigmas() if spec else []

    def _flip_refusal(self) -> str | None:
        """Why the training flip cannot run on these keypoints (``None`` when it can): a skeleton or
        left/right names declare sides, and no ``flip_idx`` says which point mirrors which."""
        spec = self.keypoint_spec()
        if spec is None or self.augment is None or self.augment.hflip <= 0 or spec.flip_idx is not None \
                or not spec.has_sides():
            return None
        return (f"{spec.source}: the keypoints have sides (a skeleton or left/right names) but no flip_idx, and "
                f"training flips images (hflip {self.augment.hflip:g}): a flipped left wrist would be labelled left; "
                "add flip_idx (each point's mirror point) to the data or set hflip: 0")

    # -- reading ----------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Generate the synthetic dataset (once, on one process per node)."""
        if self.synthetic is not None and self.streaming is None:
            self._write_synthetic()

    def _write_synthetic(self) -> None:
        kwargs = dict(self.synthetic)
        kwargs.setdefault("splits", {"train": 200, "val": 50})
        if self.masks:
            kwargs["masks"] = True
        if self.keypoints:
            kwargs["keypoints"] = True
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
        split = self.reader.samples(spec, name, self.class_names)
        if split.class_names != self.class_names:
            raise InvalidInputError(
                f"{name}: class names {split.class_names[:5]}... differ from {self.class_names[:5]}..."
            )
        self._class_table = (self.class_names, list(split.category_ids))
        return split

    def _read_folder(self, folder: str, name: str) -> DetectionSplit:
        import numpy as np

        path = safe_join(self.root, folder, f"{name} images")
        files = list_image_files(path, recursive=True)
        if not files:
            raise MissingFileError(f"{name}: no images in {path}")
        points = np.zeros((0, self.num_keypoints, 3), np.float32) if self.keypoints else None
        records = [DetectionRecord(f, i, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), keypoints=points)
                   for i, f in enumerate(files)]
        return DetectionSplit(name, records, self.class_names, self.category_ids)

    def check_plan(self) -> CheckPlan:
        """Every configured split (train, val, test, predict; each distinct one once): its images with
        their annotations, and every problem the format's reader finds in its files."""
        from ..check import CheckPlan, Problem, collect
        from .check import folder_jobs

        if self.synthetic is not None and not (self.root / STAMP).is_file():
            self._write_synthetic()
        names, problems = collect(lambda: self.class_names, str(self.root))
        if self.keypoints:
            refusal, found = collect(self._flip_refusal, str(self.root))
            problems += found
            if refusal:
                file, _, what = refusal.partition(": ")
                problems.append(Problem("error", file, what))
        plan = CheckPlan("detection", names or [], problems=problems)
        seen: set[str] = set()
        for stage in STAGES:
            spec = self.split_specs[stage]
            if spec is None or repr(spec) in seen:
                continue
            seen.add(repr(spec))
            plan.splits.append(stage)
            if isinstance(spec, dict) and set(spec) == {"images"}:
                jobs, found = folder_jobs(self.root, spec["images"], stage)
            else:
                jobs, found = self.reader.check_split(spec, stage, plan.class_names)
            plan.jobs += jobs
            plan.problems += found
        return plan

    def setup(self, stage: str | None = None) -> None:
        if self.streaming is not None:
            return  # the loaders read the chunks; no file is read
        if self.synthetic is not None and not (self.root / STAMP).is_file():
            self._write_synthetic()  # setup() called without prepare_data()
        self.check_before(stage)
        required = {"fit": ("train",), "validate": ("val",), "test": ("test",), "predict": ("predict",)}
        wanted = {"fit": ("train", "val")}.get(stage or "", required.get(stage or "", STAGES))
        for split_stage in wanted:
            if split_stage in self.datasets:
                continue
            split = self._read_split(split_stage)
            if split is None:
                if split_stage in required.get(stage or "", ()):
                    raise InvalidInputError(f"stage {stage!r} needs the {split_stage!r} split; set data.{split_stage}")
                continue
            if self.skip_bad_images:
                good, _ = check_images([r.path for r in split.records], True, what=split.name)
                split.records = [split.records[i] for i in good]
            if not split.records:
                raise InvalidInputError(
                    f"{split.name}: no images in the {split_stage!r} split ({self.split_specs[split_stage]!r}); "
                    f"check data.{split_stage} and that its images are where the annotations say"
                )
            self.splits[split_stage] = split
            transform = self._transform(split_stage)
            self.datasets[split_stage] = DetectionDataset(
                split.records, transform, self._proposal_source(split_stage, split), self.min_box_size
            )

    def _transform(self, stage: str) -> Any:
        """The albumentations pipeline of ``stage`` (files and streamed chunks alike); a training flip
        of keypoints without flip pairs is refused here (see :meth:`_flip_refusal`)."""
        train = stage == "train"
        refusal = self._flip_refusal() if train else None
        if refusal:
            raise InvalidInputError(refusal)
        spec = self.keypoint_spec()
        return build_detection_transform(
            self.image_size, self.resize, train=train and self.augment is not None,
            augment=self.augment, mean=self.mean, std=self.std, seed=self.seed,
            keypoints=self.keypoints, flip_idx=spec.flip_idx if spec else None,
        )

    def _zoom(self, stage: str) -> float:
        """The largest scale the pipeline of ``stage`` applies (what the cached images keep)."""
        return self.augment.scale[1] if stage == "train" and self.augment is not None else 1.0

    # -- streaming --------------------------------------------------------------------------------
    def stream_spec(self, split: str) -> StreamSpec | None:
        """The split's images as the cache holds them, with each image's :class:`DetectionRecord`."""
        if self.synthetic is not None and not (self.root / STAMP).is_file():
            self._write_synthetic()
        found = self._read_split(split)
        if found is None:
            return None
        records = found.records
        if self.skip_bad_images:
            good, _ = check_images([r.path for r in records], True, what=found.name)
            records = [records[i] for i in good]
        _, fields, plan, decode, _ = detection_cache_parts(records, self.image_size, self.resize, self._zoom(split))
        return StreamSpec(len(records), fields, plan, decode, lambda i: records[i])

    def stream_item(self, stage: str) -> FromStored:
        transform = self._transform(stage)

        def make(record: DetectionRecord, cache: Any) -> DetectionDataset:
            return DetectionDataset([record], transform, None, self.min_box_size, cache)

        return FromStored(make, detection_cache_parts([], None, "none", 1.0)[1], transform)

    def stream_settings(self) -> dict[str, Any]:
        return {"family": "detection", "image_size": self.image_size, "resize": self.resize,
                "train_zoom": self._zoom("train"), "masks": self.masks}

    def stream_extras(self) -> dict[str, Any]:
        return {"category_ids": list(self.category_ids)}

    def _proposal_source(self, stage: str, split: DetectionSplit) -> Any:
        if self.proposals is None:
            return None
        from visiontasks.data.proposals import ProposalCache

        kwargs = dict(self.proposals)
        cache_dir = kwargs.pop("cache_dir", None) or (self.reader.data_root / "proposals")
        cache = ProposalCache(split=stage, image_paths=[r.path for r in split.records],
                              cache_dir=cache_dir, **kwargs)
        cache.ensure()
        return cache

    def preprocessing(self) -> Preprocessing:
        """Evaluation preprocessing (saved in checkpoints): the configured resize, normalise, RGB."""
        size = None if self.resize == "none" else pair(self.image_size)
        return Preprocessing(self.resize, size, self.mean, self.std, 3)

    # -- loaders ----------------------------------------------------------------------------------
    def loader(self, stage: str) -> DataLoader:
        if self.streaming is not None:
            return self.make_stream_loader(stage, self.stage_batch_size(stage), detection_collate, self.seed,
                                           worker_init_fn)
        if stage not in self.datasets:
            self.setup({"train": "fit", "val": "validate"}.get(stage, stage))
        if stage not in self.datasets:
            raise InvalidInputError(f"no {stage!r} split configured (set data.{stage})")
        dataset = self.datasets[stage]
        dataset.cache = self.cache_once(f"{stage}:{id(dataset)}", lambda: detection_image_cache(
            self.cache, dataset.records, self.image_size, self.resize,
            self._zoom(stage),
            f"detection-{stage}", self.cache_dir, processes=self.local_processes(),
        ))
        return self.make_loader(
            dataset,
            self.stage_batch_size(stage),
            shuffle=stage == "train",
            collate_fn=detection_collate,
            worker_init_fn=worker_init_fn,
        )
