"""Streaming splits: Lightning's litdata chunks of the decoded (and shrunk) samples, read back with
``litdata.StreamingDataset`` / ``StreamingDataLoader`` from a local folder or an object store
(``s3://``, ``gs://``, ``azure://``: whatever litdata reads).

``visiontasks optimize-data`` writes, for each configured split, ``<output>/<split>/`` with
``litdata.optimize``: one stored sample per item, what the image cache would hold
(:mod:`visiontasks.data.cache`: the family's ``plan``/``decode``, the image shrunk to what the
pipeline can use, segmentation masks as class indices), the file's ``orig_size`` (H0, W0) and the
item's annotation (``meta``: the family's own record, pickled, so every target key it carries,
boxes, labels, masks, keypoints, travels without a list here). ``<output>/meta/`` is a one-sample
litdata set with the class names and the settings the chunks were written with.

A datamodule with ``streaming: DIR_OR_URL`` reads them: each stored sample becomes a one-item image
cache and goes through the family's own dataset (the same code path as ``cache: disk``), so a
streamed sample equals the file-based cached one. litdata shuffles across chunks, shards by rank
and worker under DDP, and the ``StreamingDataLoader`` is stateful: Lightning's fit loop stores its
state in ``last.ckpt`` and a resumed fit continues the stream mid-epoch.

Chunks are unpickled: read only chunks you (or someone you trust) wrote.
"""

from __future__ import annotations

import json
import pickle
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from visiontasks.errors import InvalidInputError, MissingFileError

from .cache import CacheField, Decode, ImageCache, Plan

STREAM_VERSION = 1
STREAM_SPLITS = ("train", "val", "test")
# litdata.optimize sets the process-wide start method (force=True; its default is spawn). Fork on
# Linux keeps Linux's own default for every later loader, and lets the family's plan/decode closures
# reach the workers without pickling; spawn elsewhere (those platforms' default).
_START_METHOD = "fork" if sys.platform == "linux" else None


@dataclass
class StreamSpec:
    """What ``optimize-data`` writes for one split: ``n`` items, each ``decode(i, plan(i)[1])``
    (the cache's fields) with ``meta(i)`` (the item's annotation, any picklable object)."""

    n: int
    fields: Sequence[CacheField]
    plan: Plan
    decode: Decode
    meta: Callable[[int], Any]


def split_dir(root: str, split: str) -> str:
    """``root/split`` for a local folder or a URL."""
    return f"{str(root).rstrip('/')}/{split}"


class _StoreItem:
    """``litdata.optimize``'s ``fn``: item ``i`` -> the stored sample (a flat dict: its keys are the
    same for every item of a split, as litdata requires)."""

    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec

    def __call__(self, i: int) -> dict[str, Any]:
        orig, size = self.spec.plan(i)
        arrays = self.spec.decode(i, size)
        out: dict[str, Any] = {"orig_size": np.asarray(orig, np.int64)}
        for f in self.spec.fields:
            arr = np.ascontiguousarray(np.asarray(arrays[f.name]).astype(f.dtype, copy=False))
            if arr.shape != f.shape(size):
                raise InvalidInputError(f"optimize-data: item {i} decoded to {arr.shape}, expected {f.shape(size)}")
            out[f.name] = arr
        out["meta"] = pickle.dumps(self.spec.meta(i), protocol=pickle.HIGHEST_PROTOCOL)
        return out


def write_split(output: str, spec: StreamSpec, num_workers: int = 1, chunk_bytes: str = "64MB",
                shuffle_seed: int | None = None) -> None:
    """The chunks of one split under ``output`` (overwritten), in ``num_workers`` processes; in a
    random order drawn from ``shuffle_seed`` when given (the training split).

    Why the training split is written shuffled: litdata's training shuffle permutes chunks and then
    blocks of 256 neighbouring items within a chunk, not the whole set, so a batch is drawn from
    items written next to each other. Written in the files' order (an ImageFolder lists one class
    after the other), every batch was nearly one class: on hymenoptera a ResNet-18 streamed to val
    accuracy 0.46 where the same steps from the files gave 0.63-0.70."""
    import litdata

    if spec.n == 0:
        raise InvalidInputError(f"optimize-data: {output}: the split has no items")
    order = list(range(spec.n))
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(spec.n).tolist()
    litdata.optimize(fn=_StoreItem(spec), inputs=order, output_dir=output, chunk_bytes=chunk_bytes,
                     num_workers=max(1, min(num_workers, spec.n)), mode="overwrite", verbose=False,
                     keep_data_ordered=True, start_method=_START_METHOD)


def _meta_item(blob: str) -> dict[str, str]:
    return {"info": blob}


def write_meta(root: str, info: dict[str, Any]) -> None:
    """``root/meta``: one sample with ``info`` (JSON: class names, settings, the format version)."""
    import litdata

    blob = json.dumps({"version": STREAM_VERSION, **info}, sort_keys=True, default=str)
    litdata.optimize(fn=_meta_item, inputs=[blob], output_dir=split_dir(root, "meta"), chunk_bytes="1MB",
                     num_workers=1, mode="overwrite", verbose=False, start_method=_START_METHOD)


def read_meta(root: str) -> dict[str, Any]:
    """What :func:`write_meta` wrote under ``root``; a folder that holds no chunks is a
    :class:`~visiontasks.errors.MissingFileError` saying how to write them."""
    from litdata import StreamingDataset

    try:
        info = json.loads(StreamingDataset(split_dir(root, "meta"))[0]["info"])
    except (FileNotFoundError, ValueError, OSError) as err:
        raise MissingFileError(f"streaming: {root} holds no visiontasks chunks ({type(err).__name__}: {err}); "
                               "write them with visiontasks optimize-data --config FILE --output DIR_OR_URL") from None
    if info.get("version") != STREAM_VERSION:
        raise InvalidInputError(f"streaming: {root} was written by another format version ({info.get('version')}); "
                                "write it again with visiontasks optimize-data")
    return info


def check_settings(root: str, info: dict[str, Any], settings: dict[str, Any]) -> None:
    """Refuse chunks written with other decoding settings than the config's (naming the first)."""
    written = info.get("settings", {})
    for key, value in json.loads(json.dumps(settings, default=str)).items():
        if written.get(key) != value:
            raise InvalidInputError(f"streaming: {root} was written with {key}={written.get(key)!r}, the config says "
                                    f"{value!r}; write the chunks again with visiontasks optimize-data")


def one_item_cache(stored: dict[str, Any], fields: Sequence[CacheField]) -> ImageCache:
    """A stored sample as an :class:`ImageCache` of one item (what the family datasets read); the
    ``fields`` it lacks are left out (a split written without masks)."""
    fields = [f for f in fields if f.name in stored]
    size = stored[fields[0].name].shape[:2]
    buffers = {f.name: np.ascontiguousarray(stored[f.name]).reshape(-1) for f in fields}
    return ImageCache(fields, np.asarray(stored["orig_size"]).reshape(1, 2), np.asarray([size]), buffers=buffers)


class FromStored:
    """litdata's per-item ``transform``: stored sample -> the family's sample, through
    ``make(meta, cache)`` (a one-item family dataset; its item 0 is returned).

    ``augment``: the albumentations pipeline inside, reseeded per loader worker through
    :meth:`set_random_seed` (as the file-based datasets' ``transform`` is)."""

    def __init__(self, make: Callable[[Any, ImageCache], Any], fields: Sequence[CacheField], augment: Any = None) -> None:
        self.make, self.fields, self.augment = make, list(fields), augment

    def __call__(self, stored: dict[str, Any]) -> Any:
        return self.make(pickle.loads(stored["meta"]), one_item_cache(stored, self.fields))[0]

    def set_random_seed(self, seed: int) -> None:
        if self.augment is not None and hasattr(self.augment, "set_random_seed"):
            self.augment.set_random_seed(seed)


def streaming_dataset(root: str, split: str, to_item: FromStored, shuffle: bool, seed: int) -> Any:
    """``litdata.StreamingDataset`` over ``root/split`` yielding the family's samples (``shuffle``:
    across chunks and within them, reshuffled each epoch from ``seed``)."""
    from litdata import StreamingDataset

    try:
        return StreamingDataset(split_dir(root, split), shuffle=shuffle, seed=seed, transform=to_item)
    except (FileNotFoundError, ValueError) as err:
        raise MissingFileError(f"streaming: no {split!r} chunks under {root} ({err}); write them with "
                               "visiontasks optimize-data") from None


def _stream_loader_class() -> type:
    from litdata import StreamingDataLoader

    class EpochStreamingDataLoader(StreamingDataLoader):
        """litdata's ``StreamingDataLoader``, where every ``__iter__`` is one epoch (Lightning's use).

        A workaround, not a loader of our own: litdata clears its ``restore`` flag (set by
        ``load_state_dict``) only when an epoch's generator runs to its end, but Lightning stops
        after ``len(loader)`` batches without exhausting it. The epoch after a mid-epoch resume
        then kept ``restore`` and replayed the resumed epoch's order instead of reshuffling (the
        same flag behaviour as litData issues #760 / #770). Here a restore applies to the first
        ``__iter__`` after ``load_state_dict`` only. tests/test_streaming.py holds the contract."""

        _resumed_once = False

        def __iter__(self) -> Any:
            if self.restore and self._resumed_once:
                self.restore = False  # the resumed epoch was iterated: this one starts afresh
            self._resumed_once = bool(self.restore)
            return super().__iter__()

    return EpochStreamingDataLoader


def stream_loader(dataset: Any, **kwargs: Any) -> Any:
    """A ``litdata.StreamingDataLoader`` over ``dataset`` (see :func:`_stream_loader_class`):
    stateful, so Lightning's fit loop keeps its position in ``last.ckpt``."""
    global _LOADER_CLASS
    if _LOADER_CLASS is None:
        _LOADER_CLASS = _stream_loader_class()
    return _LOADER_CLASS(dataset, **kwargs)


_LOADER_CLASS: type | None = None
