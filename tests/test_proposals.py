"""Selective search, the on-disk proposal cache, and proposal recall."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visiontasks.data.proposals import (
    ProposalCache,
    ProposalCacheWarning,
    SelectiveSearchSettings,
    proposal_recall,
    selective_search,
)
from visiontasks.data.shapes import render_scene

SMALL = dict(mode="single", max_boxes=50)


def _scene(seed: int, size: int = 64):
    return render_scene(np.random.default_rng(seed), size, size, 3, max_objects=3)


def _write_images(folder: Path, n: int, size: int = 48) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        img, _ = _scene(i, size)
        p = folder / f"img{i}.png"
        Image.fromarray(img).save(p)
        paths.append(p)
    return paths


# -- selective search ---------------------------------------------------------------------------
def test_selective_search_boxes_are_valid_ranked_unique_and_deterministic():
    img, inst = _scene(0, 96)
    boxes = selective_search(img, SelectiveSearchSettings(mode="fast", max_boxes=200))
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    assert 0 < len(boxes) <= 200
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 96).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 3] <= 96).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert len(np.unique(boxes, axis=0)) == len(boxes)
    np.testing.assert_array_equal(boxes, selective_search(img, SelectiveSearchSettings(mode="fast", max_boxes=200)))
    # the whole-image region (top of the hierarchy) is among them
    assert any(np.allclose(b, [0, 0, 96, 96]) for b in boxes)


def test_selective_search_finds_the_shapes():
    gts, props = [], []
    for seed in range(4):
        img, inst = _scene(seed, 96)
        gts.append(np.array([i.box for i in inst], np.float32))
        props.append(selective_search(img, SelectiveSearchSettings(mode="fast", max_boxes=200)))
    r = proposal_recall(props, gts)
    assert r["recall@0.5"] >= 0.9, r
    assert r["abo"] >= 0.8, r


def test_fast_mode_has_more_strategies_than_single():
    assert len(SelectiveSearchSettings(mode="single").strategies()) == 1
    assert len(SelectiveSearchSettings(mode="fast").strategies()) == 8  # 2 colour spaces x 2 k x 2 sims
    with pytest.raises(ValueError, match="colour space"):
        SelectiveSearchSettings(colour_spaces=("xyz",)).strategies()


def test_max_side_downscales_but_returns_original_pixels():
    img, _ = _scene(3, 128)
    boxes = selective_search(img, SelectiveSearchSettings(mode="single", max_side=64))
    assert boxes[:, 2].max() == pytest.approx(128, abs=1) and boxes[:, 3].max() == pytest.approx(128, abs=1)


def test_image_that_yields_zero_proposals():
    flat = np.full((8, 8, 3), 120, np.uint8)
    assert selective_search(flat, SelectiveSearchSettings(mode="single", min_box_side=16)).shape == (0, 4)


# -- recall -------------------------------------------------------------------------------------
def test_recall_numbers():
    gt = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.zeros((0, 4), np.float32)]
    props = [np.array([[0, 0, 10, 12], [20, 20, 26, 30]], np.float32), np.array([[0, 0, 5, 5]], np.float32)]
    r = proposal_recall(props, gt)
    # IoUs: 100/120 = 0.833 and 60/100 = 0.6
    assert r["recall@0.5"] == 1.0 and r["recall@0.7"] == 0.5
    assert r["abo"] == pytest.approx((100 / 120 + 0.6) / 2)
    assert r["num_gt"] == 2 and r["mean_proposals"] == 1.5
    assert proposal_recall([np.zeros((0, 4))], [gt[0]])["recall@0.5"] == 0.0
    assert proposal_recall(props, gt, top_k=1)["recall@0.5"] == 0.5


# -- cache --------------------------------------------------------------------------------------
def _cache(tmp_path: Path, paths, **kw) -> ProposalCache:
    kw = {**SMALL, **kw}
    return ProposalCache("train", paths, tmp_path / "cache", processes=1, progress=False, **kw)


def test_cache_computes_once_and_reuses(tmp_path):
    paths = _write_images(tmp_path / "img", 3)
    c = _cache(tmp_path, paths).ensure()
    assert c.last_computed == 3 and c.path.exists()
    first = [c(p) for p in paths]
    assert all(b.dtype == np.float32 and b.shape[1] == 4 for b in first)
    c2 = _cache(tmp_path, paths).ensure()
    assert c2.last_computed == 0
    for a, p in zip(first, paths):
        np.testing.assert_array_equal(a, c2(p))
    # the same boxes as computing directly
    np.testing.assert_array_equal(first[0], selective_search(np.asarray(Image.open(paths[0])),
                                                             SelectiveSearchSettings(**SMALL)))


def test_stale_entry_is_recomputed(tmp_path):
    paths = _write_images(tmp_path / "img", 2)
    c = _cache(tmp_path, paths).ensure()
    before = c(paths[1])
    img, _ = _scene(99, 48)
    Image.fromarray(img).save(paths[1])
    st = paths[1].stat()
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # mtime surely differs
    c2 = _cache(tmp_path, paths).ensure()
    assert c2.last_computed == 1
    after = c2(paths[1])
    np.testing.assert_array_equal(after, selective_search(img, SelectiveSearchSettings(**SMALL)))
    assert before.shape != after.shape or not np.array_equal(before, after)
    assert _cache(tmp_path, paths).ensure().last_computed == 0  # stale version was replaced on disk


def test_cache_from_other_settings_is_not_used(tmp_path):
    paths = _write_images(tmp_path / "img", 2)
    a = _cache(tmp_path, paths).ensure()
    b = _cache(tmp_path, paths, max_boxes=5).ensure()
    assert a.path != b.path and b.last_computed == 2  # its own file, computed with its settings
    assert all(len(b(p)) <= 5 for p in paths)
    # an other-settings file put under this settings' name: refused with a warning, rebuilt
    shutil.copy(a.path, b.path)
    c = _cache(tmp_path, paths, max_boxes=5)
    with pytest.warns(ProposalCacheWarning, match="other settings"):
        c.ensure()
    assert c.last_computed == 2 and all(len(c(p)) <= 5 for p in paths)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "inconsistent"])
def test_corrupt_cache_file_is_rebuilt_with_a_warning(tmp_path, damage):
    paths = _write_images(tmp_path / "img", 2)
    c = _cache(tmp_path, paths).ensure()
    good = [c(p) for p in paths]
    raw = c.path.read_bytes()
    if damage == "garbage":
        c.path.write_bytes(b"not a cache at all")
    elif damage == "truncated":
        c.path.write_bytes(raw[: len(raw) // 2])
    else:
        with np.load(c.path) as d:
            arrays = dict(d)
        arrays["offsets"] = arrays["offsets"][:-1]
        with open(c.path, "wb") as fh:
            np.savez(fh, **arrays)
    c2 = _cache(tmp_path, paths)
    with pytest.warns(ProposalCacheWarning, match="rebuilding"):
        c2.ensure()
    assert c2.last_computed == 2
    for g, p in zip(good, paths):
        np.testing.assert_array_equal(g, c2(p))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _cache(tmp_path, paths).ensure().last_computed == 0


def test_unknown_setting_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown proposal setting"):
        ProposalCache("train", [], tmp_path, max_box=3)


def test_zero_proposal_image_is_cached(tmp_path):
    p = tmp_path / "flat.png"
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(p)
    c = _cache(tmp_path, [p], min_box_side=16).ensure()
    assert c(p).shape == (0, 4)
    assert _cache(tmp_path, [p], min_box_side=16).ensure()(p).shape == (0, 4)


@pytest.mark.slow
def test_cache_on_two_processes_matches_one(tmp_path):
    paths = _write_images(tmp_path / "img", 4)
    one = _cache(tmp_path / "a", paths).ensure()
    two = ProposalCache("train", paths, tmp_path / "b", processes=2, progress=True, **SMALL).ensure()
    assert two.last_computed == 4
    for p in paths:
        np.testing.assert_array_equal(one(p), two(p))


def test_split_reuses_entries_of_another_split_with_the_same_settings(tmp_path):
    paths = _write_images(tmp_path / "img", 3)
    train = _cache(tmp_path, paths).ensure()
    val = ProposalCache("val", paths[1:], tmp_path / "cache", processes=1, progress=False, **SMALL).ensure()
    assert val.last_computed == 0 and val.path != train.path and val.path.exists()
    for p in paths[1:]:
        np.testing.assert_array_equal(val(p), train(p))
    other = ProposalCache("test", paths[1:], tmp_path / "cache", processes=1, progress=False,
                          **{**SMALL, "max_boxes": 7}).ensure()
    assert other.last_computed == 2  # other settings: nothing to borrow
