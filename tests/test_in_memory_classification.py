"""The in-memory classification path (a split as one uint8 array, batches augmented as a whole),
``cache: auto``, and the torch threads left to loader workers."""

from __future__ import annotations

import logging
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from albumentations.augmentations.geometric import functional as fgeometric
from PIL import Image

from conftest import write_image_folder

from visiontasks.data import ClassificationDataModule
from visiontasks.data import base as base_mod
from visiontasks.data import cache as cache_mod
from visiontasks.data.classification import batched
from visiontasks.data.classification.batched import InMemoryImages, light_affine_theta, prepare_batch
from visiontasks.data.classification.dataset import ClassificationDataset
from visiontasks.data.classification.transforms import classification_transforms


def _image_folder(root: Path, n: int = 12, size: tuple[int, int] = (30, 40)) -> Path:
    return write_image_folder(root, n, size, grid=(5, 6))


def _dm(root: Path, **kw) -> ClassificationDataModule:
    args = dict(root=str(root), image_size=16, batch_size=4, num_workers=0, val_fraction=0.25, test_fraction=0.0)
    return ClassificationDataModule("imagefolder", **{**args, **kw})


@pytest.mark.parametrize(("cache", "augment", "held"), [
    ("auto", "light", True), ("ram", "none", True), ("disk", "light", True),
    ("none", "light", False), ("auto", "standard", False),
])
def test_which_path_a_split_takes(tmp_path: Path, cache: str, augment: str, held: bool) -> None:
    dm = _dm(_image_folder(tmp_path / "d"), cache=cache, augment=augment, cache_dir=str(tmp_path / "c"))
    ds = dm.loader("train").dataset
    assert isinstance(ds, InMemoryImages if held else ClassificationDataset)
    batch = next(iter(dm.loader("train")))
    assert batch["image"].dtype == torch.float32 and batch["image"].shape == (4, 3, 16, 16)
    assert batch["label"].dtype == torch.int64 and len(batch["id"]) == 4


def test_in_memory_eval_batches_equal_the_per_sample_path(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "d")
    held, files = _dm(root, cache="ram"), _dm(root, cache="none")
    a, b = list(held.loader("val")), list(files.loader("val"))
    assert [x["id"] for x in a] == [x["id"] for x in b] and all(torch.equal(x["label"], y["label"]) for x, y in zip(a, b))
    # the same image, resized once by area averaging instead of albumentations' bilinear Resize
    for x, y in zip(a, b):
        assert x["image"].shape == y["image"].shape
        assert (x["image"] - y["image"]).abs().mean() < 0.1  # normalised units (std of the data ~1)


def test_in_memory_sources_need_no_workers(caplog: pytest.LogCaptureFixture) -> None:
    dm = ClassificationDataModule("digits", image_size=12, in_chans=1, batch_size=16, num_workers=1)
    with caplog.at_level(logging.INFO):
        loader = dm.loader("train")
        dm.loader("val")
    assert isinstance(loader.dataset, InMemoryImages) and loader.num_workers == 0
    assert caplog.text.count("num_workers: 1 not used: the images are held in memory") == 1
    batch = next(iter(loader))
    assert batch["image"].shape == (16, 1, 12, 12) and batch["image"].dtype == torch.float32


def _albumentations_matrix(generator_seed: int, h: int, w: int) -> np.ndarray:
    """The albumentations ``Affine`` matrix of the parameters ``light_affine_theta`` draws."""
    g = torch.Generator().manual_seed(generator_seed)
    sx = torch.empty(1).uniform_(*batched.SCALE, generator=g).item()
    sy = torch.empty(1).uniform_(*batched.SCALE, generator=g).item()
    tx = int(torch.empty(1).uniform_(-batched.TRANSLATE, batched.TRANSLATE, generator=g).item() * w)
    ty = int(torch.empty(1).uniform_(-batched.TRANSLATE, batched.TRANSLATE, generator=g).item() * h)
    angle = torch.empty(1).uniform_(-batched.ROTATE_DEG, batched.ROTATE_DEG, generator=g).item()
    return fgeometric.create_affine_transformation_matrix(
        {"x": tx, "y": ty}, {"x": 0.0, "y": 0.0}, {"x": sx, "y": sy}, angle, fgeometric.center((h, w)))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_batch_affine_is_albumentations_warp(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    """The sampling grid warps exactly as cv2.warpAffine does with albumentations' own matrix."""
    monkeypatch.setattr(batched, "AFFINE_P", 1.0)
    h, w = 28, 36
    img = cv2.GaussianBlur((np.random.default_rng(seed).random((h, w)) * 255).astype(np.float32), (5, 5), 2)
    theta = light_affine_theta(1, h, w, torch.Generator().manual_seed(seed))
    grid = F.affine_grid(theta, [1, 1, h, w], align_corners=False)
    ours = F.grid_sample(torch.from_numpy(img)[None, None], grid, align_corners=False)[0, 0].numpy()
    matrix = _albumentations_matrix(seed, h, w)
    ref = cv2.warpAffine(img, matrix[:2], (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    assert np.abs(ours - ref).max() < 0.05  # grey levels 0..255


def _stats(images: np.ndarray) -> np.ndarray:
    """Per image: mean level and the bright square's centroid (x, y) in pixels, ``[n, 3]``."""
    ys, xs = np.mgrid[: images.shape[1], : images.shape[2]]
    mass = np.clip(images - images.mean(axis=(1, 2), keepdims=True), 0, None) + 1e-6
    cx = (mass * xs).sum(axis=(1, 2)) / mass.sum(axis=(1, 2))
    cy = (mass * ys).sum(axis=(1, 2)) / mass.sum(axis=(1, 2))
    return np.stack([images.mean(axis=(1, 2)), cx, cy], 1)


def test_batch_light_augmentation_has_the_albumentations_distribution() -> None:
    """2,000 draws of each: the mean level and the position of a bright square move alike."""
    h = w = 28
    img = np.full((h, w, 1), 40, np.uint8)
    img[8:16, 12:20] = 220
    n = 2000
    torch.manual_seed(0)
    ours = prepare_batch(torch.from_numpy(img).permute(2, 0, 1)[None].repeat(n, 1, 1, 1), (0.0,), (1 / 255,), "light")
    ours = ours[:, 0].numpy()
    pipeline = classification_transforms((h, w), True, "light", (0.0,), (1 / 255,), 1)
    pipeline.set_random_seed(0)
    ref = np.stack([pipeline(image=img)["image"][0].numpy() for _ in range(n)])
    a, b = _stats(ours), _stats(ref)
    spread = b.std(axis=0)
    assert np.all(np.abs(a.mean(axis=0) - b.mean(axis=0)) < 0.1 * spread), (a.mean(0), b.mean(0))
    assert np.all(np.abs(a.std(axis=0) / spread - 1) < 0.1), (a.std(0), spread)


def test_cache_auto_picks_ram_when_it_fits_and_none_when_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root = _image_folder(tmp_path / "d")
    with caplog.at_level(logging.INFO):
        assert isinstance(_dm(root).loader("train").dataset, InMemoryImages)
    assert "cache auto -> ram (9 decoded images need about" in caplog.text
    caplog.clear()
    monkeypatch.setattr(cache_mod, "available_memory", lambda: 4 * 9 * 16 * 16 * 3 - 4)  # its 25% is just too small
    with caplog.at_level(logging.INFO):
        ds = _dm(root).loader("train").dataset
    assert isinstance(ds, ClassificationDataset) and ds.cache is None
    assert "cache auto -> none" in caplog.text and "cache: disk keeps them" in caplog.text


def test_cache_auto_estimates_from_a_sample_of_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []

    def plan(i: int) -> tuple[tuple[int, int], tuple[int, int]]:
        seen.append(i)
        return (100, 100), (10, 10)

    monkeypatch.setattr(cache_mod, "available_memory", lambda: 10**12)
    field = [cache_mod.CacheField("image", "uint8", 3)]
    assert cache_mod.resolve_cache_mode("auto", 100_000, plan, field, "big") == "ram"
    assert len(seen) == cache_mod.AUTO_SAMPLE and seen[0] == 0 and seen[-1] == 99_999
    monkeypatch.setattr(cache_mod, "available_memory", lambda: 4 * 100_000 * 300 - 1)
    assert cache_mod.resolve_cache_mode("auto", 100_000, plan, field, "big") == "none"
    assert cache_mod.resolve_cache_mode("auto", 100_000, plan, field, "big", processes=1) == "none"
    monkeypatch.setattr(cache_mod, "available_memory", lambda: 4 * 100_000 * 300)
    assert cache_mod.resolve_cache_mode("auto", 100_000, plan, field, "big") == "ram"
    assert cache_mod.resolve_cache_mode("auto", 100_000, plan, field, "big", processes=2) == "none"  # one cache each


def test_torch_threads_leave_the_cores_to_loader_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cache_mod, "available_cpus", lambda: 8)
    try:
        torch.set_num_threads(8)
        base_mod.share_cores_with_workers(3)
        assert torch.get_num_threads() == 5
        base_mod.share_cores_with_workers(7, local_processes=2)  # 4 cores each, all to workers
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        base_mod.share_cores_with_workers(1)  # never raised
        assert torch.get_num_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        torch.set_num_threads(8)
        base_mod.share_cores_with_workers(3)  # the user said
        assert torch.get_num_threads() == 8
    finally:
        torch.set_num_threads(before)


def test_in_memory_path_learns(tmp_path: Path) -> None:
    """LeNet-5 on bright-left vs bright-right images through the in-memory path, light augmentation."""
    import lightning.pytorch as pl

    from visiontasks.tasks import ClassificationTask

    rng = np.random.default_rng(0)
    for k in range(160):
        img = rng.integers(0, 60, (20, 20), dtype=np.uint8)
        half = slice(0, 10) if k % 2 else slice(10, 20)
        img[:, half] += 150
        d = tmp_path / "d" / "train" / ("left" if k % 2 else "right")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{k}.png")
    dm = ClassificationDataModule("imagefolder", root=str(tmp_path / "d"), image_size=20, in_chans=1, batch_size=16,
                                  val_fraction=0.25, test_fraction=0.0, augment="light")
    task = ClassificationTask(backbone="lenet5", num_classes=2, in_chans=1)
    trainer = pl.Trainer(max_epochs=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", default_root_dir=str(tmp_path))
    trainer.fit(task, datamodule=dm)
    assert isinstance(dm.loader("train").dataset, InMemoryImages)
    assert trainer.callback_metrics["val/acc"] > 0.9


def test_pipeline_constants_match_the_albumentations_preset() -> None:
    """batched.py's numbers are the ``light`` preset's (one place to change each)."""
    ops = {type(t).__name__: t for t in classification_transforms((8, 8), True, "light", (0.5,), (0.5,), 1)}
    affine, colour = ops["Affine"], ops["RandomBrightnessContrast"]
    assert affine.p == batched.AFFINE_P and colour.p == batched.COLOUR_P
    assert tuple(affine.scale["x"]) == tuple(affine.scale["y"]) == batched.SCALE and not affine.keep_ratio
    assert tuple(affine.translate_percent["x"]) == (-batched.TRANSLATE, batched.TRANSLATE)
    assert tuple(affine.rotate) == (-batched.ROTATE_DEG, batched.ROTATE_DEG)
    assert tuple(colour.brightness_limit) == (-batched.BRIGHTNESS, batched.BRIGHTNESS)
    assert tuple(colour.contrast_limit) == (-batched.CONTRAST, batched.CONTRAST) and colour.brightness_by_max
    assert isinstance(ops["Affine"], A.Affine)
