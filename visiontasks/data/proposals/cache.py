"""Region proposals computed once per dataset split and kept on disk (like detectron2's precomputed
proposal files), with the bookkeeping that makes a cache safe to reuse.

One file per split and per proposal settings: ``<cache_dir>/<split>-selective_search-<hash>.npz``,
where ``<hash>`` digests the settings, so caches made with other settings sit beside it untouched.
The file holds, as plain arrays (no pickle): a JSON header (format version, split, settings, and for
each image its resolved path, byte size and modification time in ns), all boxes concatenated
(``float32 [N, 4]`` xyxy in pixels of the original image) and the offsets of each image's rows.

- an image whose size or mtime changed since it was cached (stale entry) is recomputed;
- a file that cannot be read, or whose header disagrees with its arrays or names other settings,
  is rebuilt with a warning, never used;
- missing entries are taken from the other splits' files of the same settings when they hold the
  same image (same path, size, mtime), else computed with a progress bar on all CPU cores
  (``multiprocessing``);
- concurrent processes (DDP ranks) serialise on a lock file, so one computes and the others load;
- files are written to a temporary name and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from visiontasks.errors import InvalidInputError

from ..cache import locked
from ..io import read_image
from .selective_search import SelectiveSearchSettings, selective_search

CACHE_VERSION = 1


class ProposalCacheWarning(UserWarning):
    """A cache file was unusable (corrupt, other settings) and is being rebuilt."""


def _file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), int(st.st_size), int(st.st_mtime_ns)


def _compute(args: tuple[int, str, dict]) -> tuple[int, np.ndarray]:
    """Worker: proposals for one image file (module level so spawned processes can import it)."""
    index, path, settings = args
    settings = dict(settings)
    for key in ("colour_spaces", "ks", "similarities"):
        settings[key] = tuple(settings[key])
    return index, selective_search(read_image(path), SelectiveSearchSettings(**settings))


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _pool_context() -> mp.context.BaseContext:
    """fork on Linux (as torch's DataLoader does): a spawned worker would re-import torch and the
    package (seconds each); the workers run only numpy/scipy/scikit-image code, no torch/OpenMP, so
    the parent's thread pools are never used in a child. spawn elsewhere."""
    if sys.platform == "linux":
        return mp.get_context("fork")
    return mp.get_context("spawn")


class ProposalCache:
    """Selective-search proposals of one split's images, cached on disk.

    Args:
        split: name of the split (``"train"``, ``"val"``...), part of the file name.
        image_paths: the split's image files.
        cache_dir: folder of the cache files (created).
        processes: worker processes for missing entries (default: all CPUs available to us; 1 or a
            single missing image computes in this process).
        progress: show a progress bar (tqdm, on stderr) while computing.
        **settings: :class:`SelectiveSearchSettings` fields (``mode``, ``max_boxes``, ``max_side``,
            ``min_box_side``, ``colour_spaces``, ``ks``, ``similarities``, ``sigma``, ``seed``).

    ``cache(path) -> float32 [P, 4]`` xyxy in pixels of the original image (``P`` may be 0).
    """

    def __init__(
        self,
        split: str,
        image_paths: Sequence[str | Path],
        cache_dir: str | Path,
        processes: int | None = None,
        progress: bool = True,
        **settings,
    ) -> None:
        for key in ("colour_spaces", "ks", "similarities"):
            if key in settings and settings[key] is not None:
                settings[key] = tuple(settings[key])
        unknown = set(settings) - set(SelectiveSearchSettings.__dataclass_fields__)
        if unknown:
            raise InvalidInputError(
                f"unknown proposal setting(s) {sorted(unknown)}; known: "
                f"{sorted(SelectiveSearchSettings.__dataclass_fields__)} + cache_dir, processes, progress"
            )
        self.settings = SelectiveSearchSettings(**settings)
        self.settings.strategies()  # validate names now, not in a worker
        self.split = str(split)
        self.image_paths = [Path(p) for p in image_paths]
        self.cache_dir = Path(cache_dir)
        self.processes = processes
        self.progress = progress
        self._boxes: dict[str, np.ndarray] | None = None
        self.last_computed = 0  # how many images the last ensure() computed (tests, logs)

    # -- identity ---------------------------------------------------------------------------------
    @property
    def settings_dict(self) -> dict:
        return {"method": "selective_search", **self.settings.to_dict()}

    @property
    def settings_hash(self) -> str:
        blob = json.dumps(self.settings_dict, sort_keys=True).encode()
        return hashlib.sha1(blob).hexdigest()[:10]

    @property
    def path(self) -> Path:
        return self.cache_dir / f"{self.split}-selective_search-{self.settings_hash}.npz"

    # -- file I/O ---------------------------------------------------------------------------------
    def _read(self, path: Path | None = None, quiet: bool = False) -> dict[tuple[str, int, int], np.ndarray]:
        """Entries of the file, keyed by (path, size, mtime_ns); {} when there is no usable file."""
        path = path or self.path
        if not path.exists():
            return {}
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(bytes(data["header"]).decode())
                boxes = np.asarray(data["boxes"], dtype=np.float32)
                offsets = np.asarray(data["offsets"], dtype=np.int64)
            images = header["images"]
            if header.get("version") != CACHE_VERSION:
                raise ValueError(f"format version {header.get('version')} != {CACHE_VERSION}")
            if header.get("settings") != self.settings_dict:
                raise ValueError(f"it was made with other settings: {header.get('settings')}")
            if (boxes.ndim != 2 or boxes.shape[1] != 4 or len(offsets) != len(images) + 1
                    or offsets[0] != 0 or offsets[-1] != len(boxes) or np.any(np.diff(offsets) < 0)):
                raise ValueError("its arrays disagree with its header")
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError) as err:
            if quiet:
                return {}
            warnings.warn(
                f"proposal cache {path} is unusable ({err}); rebuilding it", ProposalCacheWarning, stacklevel=3
            )
            return {}
        return {
            (str(p), int(s), int(m)): boxes[offsets[i]: offsets[i + 1]]
            for i, (p, s, m) in enumerate(images)
        }

    def _write(self, entries: dict[tuple[str, int, int], np.ndarray]) -> None:
        keys = list(entries)
        boxes = [entries[k].reshape(-1, 4) for k in keys]
        offsets = np.zeros(len(keys) + 1, np.int64)
        offsets[1:] = np.cumsum([len(b) for b in boxes])
        header = {
            "version": CACHE_VERSION,
            "split": self.split,
            "settings": self.settings_dict,
            "images": [list(k) for k in keys],
        }
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
                boxes=np.concatenate(boxes).astype(np.float32) if boxes else np.zeros((0, 4), np.float32),
                offsets=offsets,
            )
        os.replace(tmp, self.path)

    # -- computing --------------------------------------------------------------------------------
    def _compute_many(self, paths: list[str]) -> list[np.ndarray]:
        settings = self.settings.to_dict()
        jobs = [(i, p, settings) for i, p in enumerate(paths)]
        out: list[np.ndarray | None] = [None] * len(paths)
        processes = min(self.processes or available_cpus(), len(paths))
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(paths), desc=f"selective search ({self.split})", unit="img",
                       file=sys.stderr, dynamic_ncols=True)
        try:
            if processes <= 1:
                results: Iterator[tuple[int, np.ndarray]] = map(_compute, jobs)
                for i, boxes in results:
                    out[i] = boxes
                    if bar is not None:
                        bar.update()
            else:
                with _pool_context().Pool(processes) as pool:
                    for i, boxes in pool.imap_unordered(_compute, jobs, chunksize=1):
                        out[i] = boxes
                        if bar is not None:
                            bar.update()
        finally:
            if bar is not None:
                bar.close()
        return out  # type: ignore[return-value]

    def _borrow(self, missing: list[tuple[str, int, int]], entries: dict) -> list[tuple[str, int, int]]:
        """Take entries of images that other splits' caches with the same settings already hold (a
        val split that repeats train images, as COCO128's does); return what is still missing."""
        wanted = set(missing)
        for other in sorted(self.cache_dir.glob(f"*-selective_search-{self.settings_hash}.npz")):
            if other == self.path or not wanted:
                continue
            for key, boxes in self._read(other, quiet=True).items():
                if key in wanted:
                    entries[key] = boxes
                    wanted.discard(key)
        return [k for k in missing if k in wanted]

    def ensure(self) -> "ProposalCache":
        """Load the file, compute missing or stale entries, save, and keep the boxes in memory."""
        with locked(self.cache_dir / f".{self.path.name}.lock"):
            entries = self._read()
            keys = [_file_key(p) for p in self.image_paths]
            missing = sorted({k for k in keys if k not in entries})
            changed = bool(missing)
            if missing:
                missing = self._borrow(missing, entries)
            self.last_computed = len(missing)
            if missing:
                for key, boxes in zip(missing, self._compute_many([k[0] for k in missing])):
                    entries[key] = boxes
            wanted = dict.fromkeys(keys)
            if changed or set(entries) != set(wanted):
                # keep exactly this split's current images (stale versions and removed files go)
                self._write({k: entries[k] for k in wanted})
        self._boxes = {k[0]: entries[k] for k in keys}
        return self

    def __call__(self, path: str | Path) -> np.ndarray:
        """``float32 [P, 4]`` proposals of ``path`` (xyxy, pixels of the original image)."""
        if self._boxes is None:
            self.ensure()
        assert self._boxes is not None
        key = str(Path(path).resolve())
        boxes = self._boxes.get(key)
        if boxes is None:  # an image outside the split: compute it now, keep it in memory only
            boxes = _compute((0, key, self.settings.to_dict()))[1]
            self._boxes[key] = boxes
        return boxes.copy()

    def __len__(self) -> int:
        return len(self.image_paths)
