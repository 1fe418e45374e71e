"""What every datamodule here shares: the class table, one loader per stage, and the loader
settings that fit the machine (workers, persistent workers, pinned memory)."""

from __future__ import annotations

import os
from abc import abstractmethod
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Literal

import lightning.pytorch as pl
from torch.utils.data import DataLoader, Dataset

from visiontasks.errors import InvalidInputError
from visiontasks.preprocessing import Preprocessing

from .cache import CacheMode

if TYPE_CHECKING:
    from .check import CheckPlan

NumWorkers = int | Literal["auto"] | None
MAX_AUTO_WORKERS = 8


def resolve_num_workers(num_workers: NumWorkers, local_processes: int = 1, on_cpu: bool = False) -> int:
    """``num_workers`` as a number; a number is used as given (0: load in the training process).

    ``"auto"`` (or ``None``) when the model runs on an accelerator is Lightning's
    ``suggested_max_num_workers`` (the cores this process may use, ``os.sched_getaffinity``, shared
    by the local processes, minus one for the training process itself), at least 1 and at most
    :data:`MAX_AUTO_WORKERS`. When the model runs on the CPU (``on_cpu``) the training process needs
    the cores for the model itself, so ``auto`` is a quarter of this process's cores (0 on up to 3
    cores; the training process's torch threads take the rest, :func:`share_cores_with_workers`).
    Measured on 2 cores, one epoch from PNG files: LeNet-5 5.96 s with 0 workers + 2 threads, 9.9 s
    with 1 worker + 2 threads, 5.6 s with 1 + 1; ResNet-18 at 96 px 22.4 s, 26.2 s and 48.1 s."""
    if num_workers is None or num_workers == "auto":
        from lightning.fabric.utilities.data import suggested_max_num_workers

        if on_cpu:
            from .cache import available_cpus

            return min(MAX_AUTO_WORKERS, available_cpus() // max(1, local_processes) // 4)
        return min(MAX_AUTO_WORKERS, suggested_max_num_workers(max(1, local_processes)))
    if isinstance(num_workers, str) or num_workers < 0:
        raise InvalidInputError(f"num_workers must be 'auto' or a number >= 0, got {num_workers!r}")
    return int(num_workers)


def share_cores_with_workers(workers: int, local_processes: int = 1) -> None:
    """Lower this process's torch threads so that they and its ``workers`` loader processes fit the
    cores it may use (``os.sched_getaffinity``, shared by the local processes).

    On a CPU run, torch's OpenMP threads spin while they wait for work; with loader workers decoding
    on the same cores they take turns with them instead of running (measured on 2 cores: one
    LeNet epoch over 8,000 PNGs with 2 workers took 138 s with torch's default 2 threads, 21 s with
    1). Never raises the count, and leaves it alone when ``OMP_NUM_THREADS`` says what the user wants."""
    if workers <= 0 or os.environ.get("OMP_NUM_THREADS"):
        return
    import torch

    from .cache import available_cpus

    want = max(1, available_cpus() // max(1, local_processes) - workers)
    if torch.get_num_threads() > want:
        from lightning.pytorch.utilities import rank_zero_info

        rank_zero_info(f"torch threads {torch.get_num_threads()} -> {want}, leaving the other cores to the {workers} "
                       "loader worker(s) (set OMP_NUM_THREADS to choose)")
        torch.set_num_threads(want)


def _init_worker(user_init: Callable[[int], None] | None, worker_id: int) -> None:
    """Each loader worker decodes and augments on ONE thread: OpenCV's own pool would otherwise start
    a thread per core in every worker (torch already sets its threads to 1 there)."""
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass
    if user_init is not None:
        user_init(worker_id)


def check_sizes(minimum: int = 1, **values: Any) -> None:
    """Refuse a size option below ``minimum`` (``batch_size: -4``, ``image_size: [0, 64]``) naming it,
    before torch or albumentations fail on it deep inside a loader. ``None`` means "not set"."""
    for name, value in values.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        for v in items:
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < minimum):
                raise InvalidInputError(f"data.init_args.{name}={value!r}: must be a number >= {minimum}")


def check_num_workers(num_workers: NumWorkers) -> None:
    """Refuse a ``num_workers`` that is neither ``auto`` (or ``None``) nor a number >= 0, naming it."""
    if num_workers is not None and num_workers != "auto":
        check_sizes(0, num_workers=num_workers)


class VisionDataModule(pl.LightningDataModule):
    """A datamodule whose classes are known right after ``__init__`` (``class_names``, and
    ``num_classes``, which the CLI links to the model's) and whose four Lightning loader hooks
    are one method, :meth:`loader`, of the stage (``train``, ``val``, ``test``, ``predict``).

    The loader settings every datamodule takes are checked and kept here once: ``batch_size``
    (training), ``eval_batch_size`` (the other stages; default ``batch_size``), ``num_workers``
    (``"auto"``, ``None`` or a number), ``cache`` and ``cache_dir`` (see
    :mod:`visiontasks.data.cache`), ``pin_memory`` (``None``: pinned when the trainer runs on a
    CUDA device). Subclasses build loaders with :meth:`make_loader` and caches once per split with
    :meth:`cache_once`.

    ``streaming`` (a folder or an object-store URL written by ``visiontasks optimize-data``): every
    split is read from litdata chunks instead of the files (:mod:`visiontasks.data.streaming`); a
    family says what its chunks hold with :meth:`stream_spec`, :meth:`stream_item` and
    :meth:`stream_settings`, and builds its loaders with :meth:`make_stream_loader`."""

    class_names: list[str]
    check_first: bool = False  # ``data.init_args.check``: run the data check before training

    def __init__(
        self,
        batch_size: int,
        eval_batch_size: int | None = None,
        num_workers: NumWorkers = "auto",
        pin_memory: bool | None = None,
        check: bool = False,
        cache: CacheMode = "auto",
        cache_dir: str | None = None,
        streaming: str | None = None,
    ) -> None:
        """Every family's loader settings (a family's ``__init__`` names its own settings and its
        ``batch_size`` default, and passes these on as ``**loader``; the CLI lists them with the family's).

        Args:
            batch_size: images per training batch (per device).
            eval_batch_size: images per batch of the other stages (default: ``batch_size``).
            num_workers: loader processes; ``auto`` (default): with a GPU the available cores minus one,
                at most 8, on a CPU run a quarter of the cores, none where a split is one in-memory
                tensor (:func:`resolve_num_workers`); 0 loads in the training process.
            pin_memory: ``None`` (default): pinned when the trainer runs on a CUDA device.
            check: read every image, mask and annotation before training and stop with one error
                listing the problems (the check of ``visiontasks check``; see :mod:`visiontasks.data.check`).
            cache: ``auto`` (default: ``ram`` when the decoded split fits comfortably in memory, else
                ``none``; one info line says which), ``none`` (decode every file every epoch), ``ram``
                (decode once into memory) or ``disk`` (decode once into ``cache_dir``, reused by later
                runs until a file or setting changes); what each family stores is in its class
                docstring and :mod:`visiontasks.data.cache`.
            cache_dir: where ``disk`` writes (default ``~/.cache/visiontasks/images``).
            streaming: a folder or object-store URL written by ``visiontasks optimize-data`` from this
                config: every split is read from its litdata chunks instead of the files (see
                :mod:`visiontasks.data.streaming`).
        """
        super().__init__()
        self.check_first = check
        from .cache import check_cache_mode

        check_sizes(batch_size=batch_size, eval_batch_size=eval_batch_size)
        check_num_workers(num_workers)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.cache, self.cache_dir = check_cache_mode(cache), cache_dir
        self._built_caches: dict[str, Any] = {}
        self._said_in_memory = False
        self.streaming = str(streaming) if streaming else None
        self._stream_info: dict[str, Any] | None = None

    def stage_batch_size(self, stage: str) -> int:
        """``batch_size`` for training, ``eval_batch_size`` for the other stages."""
        return self.batch_size if stage == "train" else self.eval_batch_size

    def local_processes(self) -> int:
        """Training processes of this machine (the trainer's devices; 1 without a trainer)."""
        trainer = self._trainer()
        return int(getattr(trainer, "num_devices", 1) or 1) if trainer is not None else 1

    def cache_once(self, key: str, build: Callable[[], Any]) -> Any:
        """``build()`` (an image cache, or ``None`` when ``cache`` is or resolves to ``none``) the
        first time ``key`` (a split) is asked for; the same result afterwards."""
        if key not in self._built_caches:
            self._built_caches[key] = None if self.cache == "none" else build()
        return self._built_caches[key]

    def check_plan(self) -> CheckPlan:
        """Every image, mask and annotation to read, and the problems the annotation files already
        show (``visiontasks check`` and ``check: true`` run it; see :mod:`visiontasks.data.check`)."""
        raise NotImplementedError(f"{type(self).__name__} has no data check")

    def check_before(self, stage: str | None) -> None:
        """With ``check: true``, the first ``setup`` of ``fit`` reads the whole data set first and stops
        with one error listing the problems (count and the first ten) when training would fail. Every
        rank runs it (each reads its data anyway, and all stop alike instead of waiting on rank 0)."""
        if self.check_first and stage in (None, "fit") and not getattr(self, "_checked", False):
            from .check import check_or_raise

            check_or_raise(self.check_plan)
            self._checked = True

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @abstractmethod
    def preprocessing(self) -> Preprocessing:
        """How evaluation turns a file's image into a model input (tasks save it in checkpoints)."""

    @abstractmethod
    def loader(self, stage: str) -> DataLoader:
        """The loader of ``stage`` (training shuffles; the others keep the order)."""

    # -- loader settings --------------------------------------------------------------------------
    def _trainer(self) -> Any:
        try:
            return self.trainer
        except (AttributeError, RuntimeError):
            return None

    def resolved_num_workers(self) -> int:
        """The loader workers of each process (``auto``: shared among the trainer's local devices,
        fewer when the model runs on the CPU; see :func:`resolve_num_workers`)."""
        return resolve_num_workers(self.num_workers, self.local_processes(), self.trains_on_cpu())

    def resolved_pin_memory(self) -> bool:
        """``pin_memory`` as given, else True when the attached trainer trains on a CUDA device."""
        if self.pin_memory is not None:
            return bool(self.pin_memory)
        trainer = self._trainer()
        try:
            return trainer is not None and trainer.strategy.root_device.type == "cuda"
        except (AttributeError, RuntimeError):
            return False

    def trains_on_cpu(self) -> bool:
        """Whether the attached trainer computes on the CPU (without a trainer: whether this machine
        has no CUDA device)."""
        trainer = self._trainer()
        try:
            if trainer is not None:
                return trainer.strategy.root_device.type == "cpu"
        except (AttributeError, RuntimeError):
            return True
        import torch

        return not torch.cuda.is_available()

    def make_loader(
        self,
        dataset: Dataset,
        batch_size: int,
        shuffle: bool = False,
        collate_fn: Callable | None = None,
        drop_last: bool = False,
        worker_init_fn: Callable | None = None,
        in_memory: bool = False,
    ) -> DataLoader:
        """A loader with this datamodule's worker settings: workers kept alive between epochs
        (``persistent_workers``) whenever there are any, each on one thread, pinned memory on CUDA; on
        a CPU run the training process's torch threads leave the workers their cores
        (:func:`share_cores_with_workers`).

        ``in_memory``: the dataset cuts whole batches from memory (nothing to decode), so the batches
        are made in the training process, whose torch threads keep every core: workers would only
        add inter-process copies (LeNet-5, 8,000 28x28 images, 2 cores: 3.3 ms a batch fetched from
        2 workers against 0.4 ms in the process). A ``num_workers`` number is then not used, with
        one info line saying so (``cache: none`` decodes the files in workers instead)."""
        workers = 0 if in_memory else self.resolved_num_workers()
        if in_memory and isinstance(self.num_workers, int) and self.num_workers > 0 and not self._said_in_memory:
            from lightning.pytorch.utilities import rank_zero_info

            rank_zero_info(f"num_workers: {self.num_workers} not used: the images are held in memory and batches are "
                           "cut from them in the training process (cache: none decodes the files in workers)")
            self._said_in_memory = True
        if workers > 0 and not in_memory and self.trains_on_cpu():
            share_cores_with_workers(workers, self.local_processes())
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=workers,
            collate_fn=collate_fn,
            pin_memory=self.resolved_pin_memory(),
            drop_last=drop_last,
            worker_init_fn=partial(_init_worker, worker_init_fn) if workers > 0 else worker_init_fn,
            persistent_workers=workers > 0,
        )

    # -- streaming (litdata chunks) ---------------------------------------------------------------
    def stream_spec(self, split: str) -> Any:
        """What ``optimize-data`` writes for ``split`` (a :class:`~visiontasks.data.streaming.StreamSpec`),
        ``None`` when the config has no such split."""
        raise NotImplementedError(f"{type(self).__name__} cannot be streamed")

    def stream_item(self, stage: str) -> Any:
        """The :class:`~visiontasks.data.streaming.FromStored` of ``stage``: a stored sample -> this
        family's sample (its dataset and transform of that stage)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be streamed")

    def stream_settings(self) -> dict[str, Any]:
        """The settings the stored samples depend on (checked when the chunks are read)."""
        return {}

    def stream_extras(self) -> dict[str, Any]:
        """More of what the chunks' readers need beside the class names (detection: the category ids)."""
        return {}

    def stream_info(self) -> dict[str, Any]:
        """What ``optimize-data`` wrote beside the chunks (class names, settings), read once."""
        if self._stream_info is None:
            from .streaming import read_meta

            assert self.streaming is not None
            self._stream_info = read_meta(self.streaming)
        return self._stream_info

    def write_streams(self, output: str, num_workers: int = 1, chunk_bytes: str = "64MB") -> list[str]:
        """``optimize-data``: every configured split's chunks under ``output``, then its ``meta``;
        returns the splits written."""
        from .streaming import STREAM_SPLITS, split_dir, write_meta, write_split

        written = []
        for split in STREAM_SPLITS:
            spec = self.stream_spec(split)
            if spec is not None:
                seed = getattr(self, "seed", 0) if split == "train" else None  # see write_split
                write_split(split_dir(output, split), spec, num_workers, chunk_bytes, shuffle_seed=seed)
                written.append(split)
        write_meta(output, {"datamodule": type(self).__name__, "class_names": list(self.class_names),
                            "settings": self.stream_settings(), "splits": written, **self.stream_extras()})
        return written

    def make_stream_loader(
        self, stage: str, batch_size: int, collate_fn: Callable | None = None, seed: int = 0,
        worker_init_fn: Callable | None = None, drop_last: bool = False,
    ) -> DataLoader:
        """A ``litdata.StreamingDataLoader`` over the chunks of ``stage``'s split (``predict``: the
        test split), shuffled across chunks for training, with this datamodule's worker settings;
        ``drop_last`` (training, as the family's file loader does) when the split is larger than a batch.
        It is stateful: Lightning keeps its position in ``last.ckpt``."""
        from .streaming import check_settings, stream_loader, streaming_dataset

        assert self.streaming is not None
        check_settings(self.streaming, self.stream_info(), self.stream_settings())
        split = "test" if stage == "predict" else stage
        dataset = streaming_dataset(self.streaming, split, self.stream_item(stage), stage == "train", seed)
        workers = self.resolved_num_workers()
        if workers > 0 and self.trains_on_cpu():
            share_cores_with_workers(workers, self.local_processes())
        return stream_loader(
            dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_fn,
            pin_memory=self.resolved_pin_memory(), drop_last=drop_last and len(dataset) > batch_size,
            worker_init_fn=partial(_init_worker, worker_init_fn) if workers > 0 else worker_init_fn,
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train")

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.loader("predict")
