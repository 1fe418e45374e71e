"""``ClassificationDataModule``: every classification source (ImageFolder, torchvision
MNIST/FashionMNIST/CIFAR-10 from a local root, scikit-learn's bundled digits, synthetic shapes); the
source object comes from :data:`CLASSIFICATION_SOURCES` by name.

Every sample is ``{"image": float32 [in_chans, H, W], "label": int64, "id": str}`` (``id``: the file
path, or ``"<source>:<index>"``). Images of any mode (grey, RGB, RGBA, palette) are converted to
``in_chans`` (1 or 3) before the albumentations pipeline.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from torch.utils.data import DataLoader, Dataset

from visiontasks.errors import InvalidInputError, MissingFileError
from visiontasks.preprocessing import Preprocessing, pair

from ..base import VisionDataModule, check_sizes
from ..cache import CacheField, ImageCache, build_image_cache, resize_to, shrink_size
from ..check import CheckPlan
from ..streaming import FromStored, StreamSpec
from ..io import check_images, image_size, list_image_files, read_image
from .batched import BATCHED_AUGMENTS, BatchPreparer, InMemoryImages
from .dataset import ArraySource, ClassificationDataset, FileSource, ImageSource
from .sources import CLASSIFICATION_SOURCES, SourceOptions
from .transforms import Augment, classification_transforms, default_mean_std, largest_zoom

class ClassificationDataModule(VisionDataModule):
    """Datamodule for every classification source.

    Args:
        source: ``imagefolder`` (``root/train/<class>/*``, optional ``root/val``, ``root/test``),
            ``mnist`` / ``fashionmnist`` / ``cifar10`` (torchvision, read from ``root``; fetched only
            when ``download: true``), ``digits`` (scikit-learn's bundled 8x8 digits, offline) or
            ``synthetic`` (shapes written once as an ImageFolder under ``root``).
        root: dataset folder (default ``data/<source>``).
        image_size: side (or ``[H, W]``) images are resized to.
        in_chans: 1 or 3; images are converted to it. Must equal the model's ``in_chans``.
        val_fraction / test_fraction: seeded, stratified splits for sources without them.
        augment: train preset (``none``, ``light``, ``standard``); eval is resize + normalise.
        mean / std: normalisation (default ImageNet for 3 channels, 0.5/0.5 for 1).
        skip_bad_images: skip unreadable files in an ImageFolder with a warning and a count
            (default: a clear error naming the file).
        predict_root: a folder of images (any layout) for ``predict``; default: the test split.
        check: read every image before training and stop with one error listing the problems
            (the check of ``visiontasks check``; see :mod:`visiontasks.data.check`).
        num_workers: loader processes; ``auto`` (default): with a GPU the available cores minus
            one, at most 8, on a CPU run a quarter of the cores, and none for the in-memory path
            (see :func:`~visiontasks.data.base.resolve_num_workers`); 0 loads in the training process.
        cache: ``auto`` (default: ``ram`` when the decoded split fits comfortably in memory, else
            ``none``; one info line says which), ``none`` (decode every file every epoch), ``ram``
            (decode each file once into memory) or ``disk`` (decode once into ``cache_dir``, reused
            by later runs until a file or setting changes); see :mod:`visiontasks.data.cache`.
            In-memory sources (digits, MNIST, CIFAR-10) need no cache.

    Where a split's images are held (an in-memory source, or a ``ram``/``disk`` cache) and
    ``augment`` is ``none`` or ``light``, the split is one ``uint8`` array resized to ``image_size``,
    batches are cut from it by indexing and augmented and normalised as whole batches
    (:mod:`~visiontasks.data.classification.batched`, the same distributions as the albumentations
    presets), made in the training process: its loader has no workers, whatever ``num_workers`` says. Otherwise each
    sample goes through albumentations in the loader workers, from the files or from a cache holding
    them shrunk to cover ``image_size`` times what the augmentation can zoom (about 1.95 for
    ``standard``).
        cache_dir: where ``disk`` writes (default ``~/.cache/visiontasks/images``).
        streaming: a folder or object-store URL written by ``visiontasks optimize-data`` from this
            config: every split is read from its litdata chunks (each sample through the
            albumentations pipeline, as ``augment: standard`` does) instead of the files (see
            :mod:`visiontasks.data.streaming`).
    """

    def __init__(
        self,
        source: str = "imagefolder",
        root: str | None = None,
        image_size: int | tuple[int, int] = 32,
        in_chans: int = 3,
        batch_size: int = 64,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 0,
        augment: Augment = "light",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        download: bool = False,
        skip_bad_images: bool = False,
        predict_root: str | None = None,
        synthetic_classes: int = 4,
        synthetic_per_class: int = 60,
        **loader: Any,
    ) -> None:
        super().__init__(batch_size, **loader)
        check_sizes(image_size=image_size)
        if in_chans not in (1, 3):
            raise InvalidInputError(f"in_chans must be 1 or 3, got {in_chans}")
        source_class = CLASSIFICATION_SOURCES.get(source)  # an unknown name lists the available ones
        self.source = source
        self.root = Path(root) if root else Path("data") / source
        self.image_size = pair(image_size)
        self.in_chans = in_chans
        self.seed = seed
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.augment = augment
        default_mean, default_std = default_mean_std(in_chans)
        self.mean = tuple(mean) if mean is not None else default_mean
        self.std = tuple(std) if std is not None else default_std
        if len(self.mean) != in_chans or len(self.std) != in_chans:
            raise InvalidInputError(f"mean and std need {in_chans} value(s) each, got {self.mean} and {self.std}")
        self.download, self.skip_bad_images = download, skip_bad_images
        self.predict_root = Path(predict_root) if predict_root else None
        self.synthetic_classes, self.synthetic_per_class = synthetic_classes, synthetic_per_class
        options = SourceOptions(
            self.root, seed, val_fraction, test_fraction, download, skip_bad_images, max(self.image_size),
            synthetic_classes, synthetic_per_class,
        )
        self.reader = source_class(options)
        self._class_names: list[str] | None = None
        self._splits: dict[str, tuple[ImageSource, list[int]]] = {}
        self._held: dict[str, InMemoryImages | None] = {}

    @property
    def class_names(self) -> list[str]:
        """The class names (label ``k`` is the k-th), read once without reading the images."""
        if self._class_names is None:
            self._class_names = self.stream_info()["class_names"] if self.streaming else self.reader.class_names()
        return self._class_names

    def check_plan(self) -> CheckPlan:
        from .check import classification_plan

        return classification_plan(self)

    def setup(self, stage: str | None = None) -> None:
        self.check_before(stage)
        if self._splits or self.streaming:
            return
        self._splits = self.reader.splits()
        if len(self._splits["val"][1]) == 0:
            raise InvalidInputError(f"{self.source}: the validation split is empty; raise val_fraction or add data")

    # -- loaders ------------------------------------------------------------------------------
    def _transform(self, train: bool):  # noqa: ANN202
        return classification_transforms(self.image_size, train, self.augment, self.mean, self.std, self.in_chans)

    def loader(self, stage: str) -> DataLoader:
        if stage == "predict" and self.predict_root is not None:
            return self._predict_folder_loader()
        if self.streaming:
            return self.make_stream_loader(stage, self.batch_size, seed=self.seed, drop_last=stage == "train")
        self.setup()
        train = stage == "train"
        split = "test" if stage == "predict" else stage
        src, idx = self._splits[split]
        held = self._held_split(split, src, idx)
        ds: Dataset = held if held is not None else ClassificationDataset(
            src, idx, self._transform(train), self.in_chans, self._split_cache(split, src, idx))
        prepare = BatchPreparer(self.mean, self.std, self.augment if train else "none") if held is not None else None
        return self.make_loader(
            ds, self.batch_size, shuffle=train, drop_last=train and len(ds) > self.batch_size,
            collate_fn=prepare, in_memory=held is not None,
        )

    def _held_split(self, split: str, src: ImageSource, idx: list[int]) -> InMemoryImages | None:
        """The split as one ``uint8 [N, H, W, C]`` array at ``image_size`` (see the class docstring),
        or ``None`` when it takes the per-sample path (``standard`` augmentation, files without a
        cache, or ``cache: auto`` finding that they do not fit)."""
        if self.augment not in BATCHED_AUGMENTS:
            return None
        key = f"{id(src)}:{hash(tuple(idx))}"
        if key not in self._held:
            h, w = self.image_size
            if isinstance(src, ArraySource):
                loaded = [src.load(j, self.in_chans) for j in idx]
                images = np.stack([resize_to(im, (h, w)).reshape(h, w, self.in_chans) for im, _, _ in loaded])
                self._held[key] = InMemoryImages(images, [lab for _, lab, _ in loaded], [k for _, _, k in loaded])
            elif isinstance(src, FileSource) and self.cache != "none":
                cache = self._split_cache(split, src, idx, exact=True)
                labels, ids = zip(*(src.label_and_id(j) for j in idx)) if idx else ((), ())
                self._held[key] = None if cache is None else InMemoryImages(cache.stacked("image"), labels, ids)
            else:
                self._held[key] = None
        return self._held[key]

    def _split_cache(self, split: str, src: FileSource, idx: list[int], exact: bool = False) -> ImageCache | None:
        """The image cache of a split of files (built once; ``None`` without ``cache``, or when
        ``auto`` finds it does not fit). ``exact``: every image stored at ``image_size`` (the in-memory
        path); else shrunk to cover ``image_size`` times the largest zoom of the training
        augmentation (the same for every split: one rule, one cache key)."""
        if not isinstance(src, FileSource):
            return None

        def build() -> ImageCache | None:
            paths, fields, plan, decode, settings = self._cache_parts(src, idx, exact)
            return build_image_cache(
                self.cache, len(paths), paths, fields, plan, decode, settings,
                f"{self.source}-{split}", self.cache_dir, processes=self.local_processes(),
            )

        # an ImageFolder without test/ tests on val: one cache
        return self.cache_once(f"{id(src)}:{hash(tuple(idx))}:{exact}", build)

    def _cache_parts(self, src: FileSource, idx: list[int], exact: bool) -> tuple[list[Path], list[CacheField], Any, Any, dict]:
        """``(files, fields, plan, decode, settings)`` of a split of files as the image cache (and the
        streaming chunks) hold it: see :meth:`_split_cache`."""
        paths = [src.paths[j] for j in idx]
        th, tw = self.image_size
        zoom = largest_zoom(self.augment)

        def plan(i: int) -> tuple[tuple[int, int], tuple[int, int]]:
            if exact:  # no header read (0.2 ms a file): classification never maps back to file pixels
                return (th, tw), (th, tw)
            w0, h0 = image_size(paths[i])
            return (h0, w0), shrink_size((h0, w0), max(th / h0, tw / w0) * zoom)

        def decode(i: int, size: tuple[int, int]) -> dict:
            return {"image": resize_to(read_image(paths[i], self.in_chans), size)}

        settings = {"image_size": self.image_size, "zoom": 1.0 if exact else zoom, "in_chans": self.in_chans,
                    "exact": exact}
        return paths, [CacheField("image", "uint8", self.in_chans)], plan, decode, settings

    # -- streaming --------------------------------------------------------------------------------
    def stream_spec(self, split: str) -> StreamSpec | None:
        """The split's images as the per-sample cache holds them (shrunk to cover ``image_size`` times
        the augmentation's largest zoom), each with its ``(label, id)``."""
        self.setup()
        src, idx = self._splits[split]
        if isinstance(src, FileSource):
            _, fields, plan, decode, _ = self._cache_parts(src, idx, exact=False)
            return StreamSpec(len(idx), fields, plan, decode, lambda i: src.label_and_id(idx[i]))
        loaded = lambda i: src.load(idx[i], self.in_chans)  # noqa: E731  (in-memory sources: digits, MNIST, ...)
        return StreamSpec(len(idx), [CacheField("image", "uint8", self.in_chans)],
                          lambda i: (loaded(i)[0].shape[:2],) * 2, lambda i, size: {"image": loaded(i)[0]},
                          lambda i: loaded(i)[1:])

    def stream_item(self, stage: str) -> FromStored:
        transform = self._transform(stage == "train")

        def make(meta: tuple[int, str], cache: ImageCache) -> ClassificationDataset:
            return ClassificationDataset(FileSource([meta[1]], [meta[0]]), [0], transform, self.in_chans, cache)

        return FromStored(make, [CacheField("image", "uint8", self.in_chans)], transform)

    def stream_settings(self) -> dict[str, Any]:
        return {"family": "classification", "image_size": list(self.image_size), "in_chans": self.in_chans,
                "zoom": largest_zoom(self.augment)}

    def _predict_folder_loader(self) -> DataLoader:
        """Every image under ``predict_root`` (any layout), label -1."""
        assert self.predict_root is not None
        if not self.predict_root.is_dir():
            raise MissingFileError(f"predict_root {self.predict_root} does not exist")
        files = list_image_files(self.predict_root, recursive=True)
        if not files:
            raise InvalidInputError(f"predict_root {self.predict_root} holds no images")
        if self.skip_bad_images:
            good, _ = check_images(files, skip_bad=True, what=str(self.predict_root))
            files = [files[i] for i in good]
        ds = ClassificationDataset(FileSource(files, [-1] * len(files)), range(len(files)), self._transform(False), self.in_chans)
        return self.make_loader(ds, self.batch_size)

    def preprocessing(self) -> Preprocessing:
        """Evaluation preprocessing (saved in checkpoints): stretch to ``image_size``, normalise."""
        return Preprocessing("stretch", self.image_size, self.mean, self.std, self.in_chans)

    def state_dict(self) -> dict[str, Any]:
        return {"class_names": self.class_names}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("class_names") and self.class_names and state["class_names"] != self.class_names:
            warnings.warn(f"checkpoint classes {state['class_names']} differ from the data's {self.class_names}")
