"""Decoded images kept for the whole run: the ``cache: auto | none | ram | disk`` option of every datamodule.

``auto`` (the default) is ``ram`` when the decoded split fits comfortably (its size, estimated from
the headers of up to :data:`AUTO_SAMPLE` files spread over the split and multiplied by the training
processes of this machine, is at most :data:`AUTO_RAM_FRACTION` of the available memory), else
``none``; one info line says which and why. An explicit ``none``, ``ram`` or ``disk`` is used as given.

A family (classification, segmentation, detection) describes one split by a list of files and two
functions: ``plan(i) -> (orig (H0, W0), stored (H, W))`` read from the file headers only (cheap), and
``decode(i, (H, W)) -> {field: array}`` that decodes item ``i`` already shrunk to ``(H, W)`` (e.g.
the image, and the class-index mask). :func:`build_image_cache` then

- sums the bytes from the plan and refuses (:class:`~visiontasks.errors.InvalidInputError`, one
  line saying what to do) when they will not fit in the available memory (``ram``) or disk (``disk``);
- decodes every item once, in parallel (forked processes on Linux, threads elsewhere), with a
  progress bar, straight into one flat buffer per field;
- returns an :class:`ImageCache` whose ``get(i)`` gives read-only ``[H, W(, C)]`` views.

Memory shared by the loader workers: ``ram`` keeps each field in ONE anonymous shared mapping
(``mmap(-1, n)``, MAP_SHARED) filled before the loader forks its workers. A forked worker maps the
same pages: nothing is copied, and (unlike a list of many small arrays) no reference count lives on
the data pages, so copy-on-write never duplicates them. It needs no ``/dev/shm`` space (Docker's
default 64 MB would refuse a torch shared tensor). Where workers are spawned instead of forked
(macOS, Windows, ``multiprocessing_context="spawn"``), pickling the cache moves each buffer once into
torch shared memory, whose handle is what the workers receive.

``disk`` writes the same flat buffers as ``.npy`` files (memory-mapped read-only by each process) in
``<cache_dir>/<name>-<settings>-<files>/``: ``<files>`` digests every file's resolved path, byte size
and mtime, ``<settings>`` the decoding settings (sizes, channels, mask tables) and the format
version, so a changed file or setting gives a new folder (the stale one of the same name and
settings is removed); the folder is written under a temporary name and renamed, so a crash never
leaves half a cache, and concurrent processes (DDP ranks) serialise on a lock file.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np

from visiontasks.errors import InvalidInputError

CacheMode = Literal["auto", "none", "ram", "disk"]
CACHE_MODES = ("auto", "none", "ram", "disk")
CACHE_VERSION = 1
RAM_FRACTION = 0.8  # refuse a RAM cache needing more than this share of the available memory
AUTO_RAM_FRACTION = 0.25  # ``auto`` caches in RAM up to this share (the model and its batches need the rest)
AUTO_SAMPLE = 256  # headers read to estimate a split's decoded size for ``auto``

Size = tuple[int, int]
Plan = Callable[[int], tuple[Size, Size]]
Decode = Callable[[int, Size], dict[str, np.ndarray]]


@dataclass(frozen=True)
class CacheField:
    """One array per item: ``dtype`` and ``channels`` (0: ``[H, W]``, else ``[H, W, channels]``)."""

    name: str
    dtype: str
    channels: int = 0

    def shape(self, size: Size) -> tuple[int, ...]:
        return (size[0], size[1], self.channels) if self.channels else (size[0], size[1])


def check_cache_mode(mode: str) -> str:
    if mode not in CACHE_MODES:
        raise InvalidInputError(f"cache must be one of {', '.join(CACHE_MODES)}, got {mode!r}")
    return mode


def default_cache_dir() -> Path:
    """``$VISIONTASKS_CACHE`` or ``$XDG_CACHE_HOME/visiontasks/images`` (``~/.cache/...``): never
    the data set's folder, which may be read-only."""
    if os.environ.get("VISIONTASKS_CACHE"):
        return Path(os.environ["VISIONTASKS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "visiontasks" / "images"


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (psutil when installed, else /proc/meminfo's
    MemAvailable); ``None`` when neither can tell."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def shrink_size(size: Size, scale: float) -> Size:
    """``size`` (H, W) times ``scale`` when that makes it smaller (never enlarged), at least 1 px."""
    if scale >= 1.0:
        return int(size[0]), int(size[1])
    return max(1, int(round(size[0] * scale))), max(1, int(round(size[1] * scale)))


def resize_to(image: np.ndarray, size: Size, nearest: bool = False) -> np.ndarray:
    """``image`` resized to ``size`` (H, W): area averaging when shrinking (no aliasing), bilinear
    when enlarging either side (albumentations' ``Resize``), nearest for class ids; unchanged when it
    already has that size."""
    if image.shape[:2] == tuple(size):
        return image
    import cv2

    shrinking = size[0] <= image.shape[0] and size[1] <= image.shape[1]
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    out = cv2.resize(image, (size[1], size[0]), interpolation=interp)
    return out[..., None] if image.ndim == 3 and out.ndim == 2 else out


def _gib(n: float) -> str:
    """A byte count for a message: GiB from 1 GiB up, MiB from 1 MiB up, else KiB."""
    if n >= 2**30:
        return f"{n / 2**30:.2f} GiB"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


class ImageCache:
    """Every item's arrays, decoded once: ``get(i) -> {field: read-only array}``.

    ``orig_sizes int64 [N, 2]`` is each file's (H0, W0), ``sizes int64 [N, 2]`` the stored (H, W)
    (smaller when the family shrank it: scale boxes by ``sizes / orig_sizes``)."""

    def __init__(
        self,
        fields: Sequence[CacheField],
        orig_sizes: np.ndarray,
        sizes: np.ndarray,
        buffers: dict[str, Any] | None = None,
        folder: Path | None = None,
    ) -> None:
        self.fields = list(fields)
        self.orig_sizes = np.asarray(orig_sizes, np.int64).reshape(-1, 2)
        self.sizes = np.asarray(sizes, np.int64).reshape(-1, 2)
        self.offsets = {f.name: _offsets(self.sizes, f) for f in self.fields}
        self.folder = folder
        self._buffers = buffers  # field -> 1-D array over an mmap / torch shared tensor (ram)
        self._views: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.sizes)

    @property
    def nbytes(self) -> int:
        return sum(int(self.offsets[f.name][-1]) * np.dtype(f.dtype).itemsize for f in self.fields)

    def _arrays(self) -> dict[str, np.ndarray]:
        if self._views is None:
            if self._buffers is not None:
                self._views = {k: _as_numpy(v) for k, v in self._buffers.items()}
            else:  # disk: each process maps the files itself
                assert self.folder is not None
                self._views = {f.name: np.load(self.folder / f"{f.name}.npy", mmap_mode="r") for f in self.fields}
        return self._views

    def get(self, i: int) -> dict[str, np.ndarray]:
        """Item ``i``'s arrays, read-only views (transforms make new arrays; never write into them)."""
        arrays = self._arrays()
        size = (int(self.sizes[i, 0]), int(self.sizes[i, 1]))
        out = {}
        for f in self.fields:
            start, stop = self.offsets[f.name][i], self.offsets[f.name][i + 1]
            view = arrays[f.name][start:stop].view()
            view.flags.writeable = False
            out[f.name] = view.reshape(f.shape(size))
        return out

    def stacked(self, field: str) -> np.ndarray:
        """Every item's ``field`` as one read-only ``[N, H, W(, C)]`` array (no copy), for a cache
        whose items all have one stored size; ``ValueError`` otherwise."""
        if len(self) == 0 or not (self.sizes == self.sizes[0]).all():
            raise ValueError("stacked() needs a non-empty cache whose items share one size")
        f = next(f for f in self.fields if f.name == field)
        view = self._arrays()[field][: int(self.offsets[field][-1])].view()
        view.flags.writeable = False
        return view.reshape((len(self), *f.shape((int(self.sizes[0, 0]), int(self.sizes[0, 1])))))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_views"] = None
        if self._buffers is not None and any(not _is_torch(v) for v in self._buffers.values()):
            # pickled for a spawned worker: an mmap cannot travel, a torch shared tensor's handle can
            import torch

            for k, v in list(self._buffers.items()):
                if not _is_torch(v):
                    t = torch.empty(v.nbytes, dtype=torch.uint8).share_memory_()
                    t.numpy()[:] = v.view(np.uint8)
                    self._buffers[k] = (t, v.dtype.str)
            self._views = None
            state["_buffers"] = dict(self._buffers)
        return state


def _is_torch(v: Any) -> bool:
    return isinstance(v, tuple)


def _as_numpy(v: Any) -> np.ndarray:
    if _is_torch(v):  # (shared uint8 tensor, dtype string)
        return v[0].numpy().view(np.dtype(v[1]))
    return v


def _offsets(sizes: np.ndarray, field: CacheField) -> np.ndarray:
    per_item = sizes[:, 0] * sizes[:, 1] * max(1, field.channels)
    return np.concatenate([[0], np.cumsum(per_item)]).astype(np.int64)


def _file_key(path: Path) -> list[Any]:
    st = path.stat()
    return [str(path.resolve()), int(st.st_size), int(st.st_mtime_ns)]


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def locked(lock_path: Path) -> Any:
    """An exclusive lock between the processes of this machine (DDP ranks building one cache):
    ``filelock.FileLock`` (fcntl on POSIX, msvcrt on Windows; torch depends on it already)."""
    from filelock import FileLock

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(lock_path))


# -- filling ---------------------------------------------------------------------------------------
_JOB: tuple[Decode, dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray, list[CacheField]] | None = None


def _fill(i: int) -> None:
    """Decode item ``i`` into its slot of every buffer (runs in a forked process or a thread)."""
    assert _JOB is not None
    decode, buffers, offsets, sizes, fields = _JOB
    size = (int(sizes[i, 0]), int(sizes[i, 1]))
    arrays = decode(i, size)
    for f in fields:
        arr = np.asarray(arrays[f.name])
        want = f.shape(size)
        if arr.shape != want:
            raise InvalidInputError(f"cache: item {i} decoded to {arr.shape}, expected {want} from its header")
        buffers[f.name][offsets[f.name][i] : offsets[f.name][i + 1]] = arr.astype(f.dtype, copy=False).reshape(-1)


def _default_signals() -> None:
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)


def _fill_all(
    n: int, decode: Decode, buffers: dict[str, np.ndarray], sizes: np.ndarray, fields: list[CacheField], what: str
) -> None:
    """Fill every slot in parallel with a progress bar. Forked processes on Linux write into the
    shared mappings directly (decoding and mask tables are partly Python: threads would serialise on
    the GIL); threads elsewhere."""
    global _JOB
    from tqdm.auto import tqdm

    offsets = {f.name: _offsets(sizes, f) for f in fields}
    _JOB = (decode, buffers, offsets, sizes, fields)
    workers = min(available_cpus(), max(1, n // 16))
    bar = tqdm(total=n, desc=f"caching {what}", unit="img", disable=n < 64 or None, leave=False)
    try:
        if workers > 1 and sys.platform == "linux":
            import multiprocessing as mp

            # default signal handlers in the children: a Trainer's SIGTERM handler (inherited through
            # fork) would keep them alive through Pool.terminate() and hang the run
            pool = mp.get_context("fork").Pool(workers, initializer=_default_signals)
            try:
                for _ in pool.imap_unordered(_fill, range(n), chunksize=max(1, min(64, n // (workers * 8)))):
                    bar.update()
                pool.close()  # finished: let the children exit on their own
            except BaseException:
                pool.terminate()
                raise
            finally:
                pool.join()
        else:
            with ThreadPoolExecutor(max(1, workers)) as ex:
                for _ in ex.map(_fill, range(n)):
                    bar.update()
    finally:
        bar.close()
        _JOB = None


def _anonymous_buffer(nbytes: int, dtype: str) -> np.ndarray:
    mm = mmap.mmap(-1, max(1, nbytes))  # MAP_SHARED | MAP_ANONYMOUS: shared with forked children
    return np.frombuffer(mm, dtype=np.dtype(dtype), count=nbytes // np.dtype(dtype).itemsize)


def _item_bytes(size: Size, fields: Sequence[CacheField]) -> int:
    return sum(int(np.prod(f.shape(size))) * np.dtype(f.dtype).itemsize for f in fields)


def resolve_cache_mode(
    mode: str, n: int, plan: Plan, fields: Sequence[CacheField], what: str, processes: int = 1
) -> str:
    """``mode``, or for ``auto`` the mode it stands for (``ram`` or ``none``, see the module
    docstring), with one info line saying which and why. Reads at most :data:`AUTO_SAMPLE` headers."""
    check_cache_mode(mode)
    if mode != "auto":
        return mode
    if n == 0:
        return "none"
    from lightning.pytorch.utilities import rank_zero_info

    picks = np.unique(np.linspace(0, n - 1, min(n, AUTO_SAMPLE)).round().astype(np.int64))
    estimate = int(np.mean([_item_bytes(plan(int(i))[1], fields) for i in picks]) * n) * max(1, processes)
    avail = available_memory()
    if avail is None:
        rank_zero_info(f"{what}: cache auto -> none (the available memory is unknown; set cache: ram to keep "
                       "the decoded images in memory)")
        return "none"
    who = f" x {processes} processes" if processes > 1 else ""
    if estimate <= AUTO_RAM_FRACTION * avail:
        rank_zero_info(f"{what}: cache auto -> ram ({n} decoded images need about {_gib(estimate)}{who}, "
                       f"{_gib(avail)} available)")
        return "ram"
    rank_zero_info(f"{what}: cache auto -> none ({n} decoded images would need about {_gib(estimate)}{who}, over "
                   f"{AUTO_RAM_FRACTION:.0%} of the {_gib(avail)} available; cache: disk keeps them on disk)")
    return "none"


def build_image_cache(
    mode: str,
    n: int,
    files: Sequence[Path],
    fields: Sequence[CacheField],
    plan: Plan,
    decode: Decode,
    settings: dict[str, Any],
    what: str,
    cache_dir: str | Path | None = None,
    processes: int = 1,
) -> ImageCache | None:
    """The cache of one split (``None`` for ``mode="none"``, and for an ``auto`` that resolves to
    it); see the module docstring.

    ``n``: the number of items; ``files``: every file behind them (their path, size and mtime key the
    disk cache; for pairs give images and masks). ``settings``: everything else the decoded arrays depend on.
    ``what``: a short name for messages and the disk folder (e.g. ``"imagefolder train"``).
    ``processes``: training processes on this machine, each holding its own ``ram`` cache.
    """
    mode = resolve_cache_mode(mode, n, plan, fields, what, processes)
    if mode == "none":
        return None
    fields = list(fields)
    planned = [plan(i) for i in range(n)]
    orig = np.array([p[0] for p in planned], np.int64).reshape(-1, 2)
    sizes = np.array([p[1] for p in planned], np.int64).reshape(-1, 2)
    need = sum(int(_offsets(sizes, f)[-1]) * np.dtype(f.dtype).itemsize for f in fields)
    if mode == "ram":
        avail = available_memory()
        if avail is not None and need > RAM_FRACTION * avail:
            raise InvalidInputError(
                f"{what}: cache: ram needs {_gib(need)} for {n} decoded images but only {_gib(avail)} of "
                f"memory is available; use cache: disk, a smaller image size, or cache: none"
            )
        buffers = {f.name: _anonymous_buffer(int(_offsets(sizes, f)[-1]) * np.dtype(f.dtype).itemsize, f.dtype) for f in fields}
        _fill_all(n, decode, buffers, sizes, fields, what)
        return ImageCache(fields, orig, sizes, buffers=buffers)
    return _disk_cache(n, files, fields, decode, settings, what, cache_dir, orig, sizes, need)


def _disk_cache(
    n: int,
    files: Sequence[Path],
    fields: list[CacheField],
    decode: Decode,
    settings: dict[str, Any],
    what: str,
    cache_dir: str | Path | None,
    orig: np.ndarray,
    sizes: np.ndarray,
    need: int,
) -> ImageCache:
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in what)[:60]
    setting_key = _digest({"version": CACHE_VERSION, "fields": [vars(f) for f in fields], "settings": settings,
                           "root": os.path.commonpath([str(Path(p).resolve()) for p in files]) if files else ""})
    files_key = _digest([_file_key(Path(p)) for p in files])
    folder = root / f"{name}-{setting_key}-{files_key}"
    with locked(root / f".{name}-{setting_key}.lock"):
        if not (folder / "index.npz").is_file():
            for stale in root.glob(f"{name}-{setting_key}-*"):  # same data and settings, older files
                shutil.rmtree(stale, ignore_errors=True)
            root.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(root).free
            if need > free:
                raise InvalidInputError(
                    f"{what}: cache: disk needs {_gib(need)} in {root} but only {_gib(free)} is free; "
                    "set cache_dir to a larger disk, use a smaller image size, or cache: none"
                )
            tmp = root / f".{folder.name}.tmp{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            buffers = {
                f.name: np.lib.format.open_memmap(
                    tmp / f"{f.name}.npy", mode="w+", dtype=np.dtype(f.dtype), shape=(max(1, int(_offsets(sizes, f)[-1])),)
                )
                for f in fields
            }
            _fill_all(n, decode, buffers, sizes, fields, what)
            for b in buffers.values():
                b.flush()
            del buffers
            np.savez(tmp / "index.npz", orig_sizes=orig, sizes=sizes)
            os.replace(tmp, folder)
    index = np.load(folder / "index.npz")
    if not (np.array_equal(index["sizes"], sizes) and np.array_equal(index["orig_sizes"], orig)):
        raise InvalidInputError(f"{what}: the image cache {folder} disagrees with the files; delete it")
    return ImageCache(fields, orig, sizes, folder=folder)
