"""The image cache (``cache: auto | none | ram | disk``) of the three datamodules and the loader defaults."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_image_folder

from visiontasks.data import ClassificationDataModule, DetectionDataModule, SegmentationDataModule
from visiontasks.data import cache as cache_mod
from visiontasks.data.base import resolve_num_workers
from visiontasks.errors import InvalidInputError
from visiontasks.ops import boxes_to_original


def _image_folder(root: Path, n: int = 6, size: tuple[int, int] = (90, 120)) -> Path:
    return write_image_folder(root, n, size, grid=(6, 8))


def _batches(dm, stage: str) -> list:
    return list(dm.loader(stage))


@pytest.mark.parametrize("mode", ["ram", "disk"])
def test_classification_cache_shrinks_and_matches_shapes(tmp_path: Path, mode: str) -> None:
    root = _image_folder(tmp_path / "data")
    # ``standard``: the per-sample path, whose cache keeps files shrunk with their aspect (none/light
    # hold the split at image_size instead: tests/test_in_memory_classification.py)
    kw = dict(root=str(root), image_size=16, batch_size=2, num_workers=0, augment="standard", val_fraction=0.34,
              test_fraction=0.0, cache_dir=str(tmp_path / "cache"))
    plain = ClassificationDataModule("imagefolder", **kw)
    cached = ClassificationDataModule("imagefolder", cache=mode, **kw)
    a, b = _batches(plain, "val"), _batches(cached, "val")
    assert [x["id"] for x in a] == [x["id"] for x in b]
    assert a[0]["image"].shape == b[0]["image"].shape == (2, 3, 16, 16)
    # resizing an area-shrunk image: close to resizing the file (normalised units, std ~0.23)
    assert (a[0]["image"] - b[0]["image"]).abs().mean() < 0.1
    c = cached.loader("val").dataset.cache
    assert c.orig_sizes[0].tolist() == [90, 120]
    assert c.sizes[0].tolist() == [31, 42]  # covers 16x16 x standard's zoom 1.95, aspect kept
    assert not c.get(0)["image"].flags.writeable


def test_disk_cache_is_reused_and_rebuilt_when_a_file_changes(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "data")
    kw = dict(root=str(root), image_size=16, num_workers=0, cache="disk", cache_dir=str(tmp_path / "cache"),
              val_fraction=0.34, test_fraction=0.0, augment="standard")
    ds = ClassificationDataModule("imagefolder", **kw).loader("train").dataset
    first = ds.cache
    again = ClassificationDataModule("imagefolder", **kw).loader("train").dataset.cache
    assert first.folder == again.folder and len(list((tmp_path / "cache").glob("imagefolder-train-*"))) == 1
    victim = ds.source.paths[ds.indices[0]]
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(victim)
    os.utime(victim, ns=(1, 1))
    rebuilt = ClassificationDataModule("imagefolder", **kw).loader("train").dataset.cache
    assert rebuilt.folder != first.folder
    assert [p.name for p in (tmp_path / "cache").glob("imagefolder-train-*")] == [rebuilt.folder.name]


def test_ram_cache_refused_when_it_will_not_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _image_folder(tmp_path / "data")
    monkeypatch.setattr(cache_mod, "available_memory", lambda: 1000)
    dm = ClassificationDataModule("imagefolder", root=str(root), image_size=64, num_workers=0, cache="ram",
                                  val_fraction=0.34, test_fraction=0.0)
    with pytest.raises(InvalidInputError, match="cache: ram needs .* available; use cache: disk"):
        dm.loader("train")


def test_ram_cache_is_shared_with_loader_workers(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "data", n=8)
    dm = ClassificationDataModule("imagefolder", root=str(root), image_size=16, batch_size=4, num_workers=1,
                                  cache="ram", val_fraction=0.25, test_fraction=0.0, augment="standard")
    workers = [b["image"] for b in dm.loader("train")]
    assert [len(b) for b in workers] == [4]  # 6 training images, batch 4, drop_last
    # spawned workers receive the cache pickled into torch shared memory
    ds = dm.loader("val").dataset
    import torch.multiprocessing  # noqa: F401  (registers torch's reductions on ForkingPickler)
    from multiprocessing.reduction import ForkingPickler

    clone = ForkingPickler.loads(ForkingPickler.dumps(ds))
    assert np.array_equal(clone.cache.get(0)["image"], ds.cache.get(0)["image"])


def test_segmentation_cache_keeps_full_resolution_and_masks(tmp_path: Path) -> None:
    kw = dict(format="synthetic", synthetic={"counts": (4, 3, 2), "image_size": 40}, num_workers=0, batch_size=2,
              cache_dir=str(tmp_path / "cache"))
    out = {}
    for mode in ("none", "ram", "disk"):
        dm = SegmentationDataModule(str(tmp_path / "seg"), cache=mode, **kw)
        dm.prepare_data()
        dm.setup("fit")
        out[mode] = _batches(dm, "val")
    for mode in ("ram", "disk"):
        for a, b in zip(out["none"], out[mode]):
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
            assert a["orig_size"] == b["orig_size"]


def test_detection_cache_shrinks_but_predictions_map_to_file_pixels(tmp_path: Path) -> None:
    kw = dict(format="coco", root=str(tmp_path / "det"), image_size=48, num_workers=0, batch_size=2,
              synthetic={"splits": {"train": 4, "val": 3}, "image_size": 160}, cache_dir=str(tmp_path / "cache"))
    got = {}
    for mode in ("none", "ram"):
        dm = DetectionDataModule(cache=mode, **kw)
        dm.prepare_data()
        dm.setup("fit")
        got[mode] = _batches(dm, "val")
        if mode == "ram":
            assert dm.datasets["val"].cache.sizes[0].tolist() == [48, 48]
            _batches(dm, "train")
            assert dm.datasets["train"].cache.sizes[0].tolist() == [60, 60]  # times the largest scale 1.25
    for (_, ta), (_, tb) in zip(got["none"], got["ram"]):
        for a, b in zip(ta, tb):
            assert a["orig_size"] == b["orig_size"] == (160, 160)
            back_a = boxes_to_original(a["boxes"], a["image_box"], a["orig_size"])
            back_b = boxes_to_original(b["boxes"], b["image_box"], b["orig_size"])
            assert torch.allclose(back_a, back_b, atol=1e-3)


def test_num_workers_auto_and_bad_values() -> None:
    cores = len(os.sched_getaffinity(0))
    assert resolve_num_workers("auto") == resolve_num_workers(None) == min(8, max(1, cores - 1))
    assert resolve_num_workers("auto", on_cpu=True) == min(8, cores // 4)  # the model needs the cores
    assert resolve_num_workers(0) == 0 and resolve_num_workers(3) == 3
    with pytest.raises(ValueError, match="num_workers"):
        resolve_num_workers("many")


def test_loader_defaults_persistent_workers_and_no_pinning_on_cpu(tmp_path: Path) -> None:
    # num_workers is set: without a trainer, on this CUDA-less machine, auto means a CPU run's
    # quarter of the cores (0 on 2 cores); a GPU run's default is tested below
    dm = ClassificationDataModule("digits", image_size=8, in_chans=1, batch_size=8, augment="standard", num_workers=2)
    loader = dm.loader("train")
    assert loader.num_workers == 2 and loader.persistent_workers
    assert loader.pin_memory is False
    assert ClassificationDataModule("digits", num_workers=0).loader("val").persistent_workers is False
    # the in-memory path (augment none/light) has nothing for workers to do
    assert ClassificationDataModule("digits", image_size=8, in_chans=1).loader("train").num_workers == 0


def test_unknown_cache_mode_is_one_line_error() -> None:
    with pytest.raises(InvalidInputError, match="cache must be one of auto, none, ram, disk"):
        ClassificationDataModule("digits", cache="gpu")


@pytest.mark.timeout(120)
def test_ram_cache_filled_by_processes_inside_a_fit(tmp_path: Path) -> None:
    """Enough images for the forked fill pool, inside Trainer.fit (whose SIGTERM handler the pool's
    children inherit: they must still exit, else the run hangs)."""
    import lightning.pytorch as pl

    from visiontasks.tasks import ClassificationTask

    root = _image_folder(tmp_path / "data", n=80, size=(20, 20))
    dm = ClassificationDataModule("imagefolder", root=str(root), image_size=16, batch_size=8, num_workers=0,
                                  cache="ram", val_fraction=0.2, test_fraction=0.0, augment="standard")
    task = ClassificationTask(backbone="lenet5", num_classes=2, in_chans=3)
    trainer = pl.Trainer(max_steps=2, limit_val_batches=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                         default_root_dir=str(tmp_path))
    trainer.fit(task, datamodule=dm)
    assert trainer.global_step == 2 and len(dm.loader("train").dataset.cache) == 64
