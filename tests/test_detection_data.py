"""Detection data: COCO / VOC / YOLO readers on generated files, transforms, bad inputs."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch
import yaml
from albumentations.pytorch import ToTensorV2
from PIL import Image

import visiontasks  # noqa: F401  (quiet albumentations)
from visiontasks.data.detection import (
    AugmentConfig,
    DatasetFormatError,
    DetectionDataModule,
    DetectionDataset,
    DetectionRecord,
    apply_detection_transform,
    boxes_to_original,
    build_detection_transform,
    detection_collate,
    read_coco,
    read_voc,
    read_yolo,
    write_synthetic_detection,
)
from visiontasks.data.io import ImageReadError
from visiontasks.data.shapes import render_scene

SPLITS = {"train": 6, "val": 4}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("synthetic")
    return {
        fmt: write_synthetic_detection(base / fmt, fmt, splits=SPLITS, image_size=(48, 64), num_classes=3,
                                       background_fraction=0.3, seed=3)
        for fmt in ("coco", "voc", "yolo")
    }


def _read(fmt: str, root: Path, split: str):
    if fmt == "coco":
        return read_coco(root / f"annotations/instances_{split}.json", f"images/{split}", root)
    if fmt == "voc":
        return read_voc(root, split, ["circle", "square", "triangle"])
    return read_yolo(root, split)


# -- formats ----------------------------------------------------------------------------------------
def test_writers_store_what_the_renderer_drew(synthetic: dict[str, Path]) -> None:
    # replay the writer's random stream for the train split (split index 0) and compare every box
    rng = np.random.default_rng([3, 0])
    expected = []
    for _ in range(SPLITS["train"]):
        background = rng.random() < 0.3
        _, inst = render_scene(rng, 48, 64, 3, max_objects=0 if background else 3,
                               min_objects=0 if background else 1, size_range=(0.1, 0.3))
        expected.append((np.array([i.box for i in inst], np.float32).reshape(-1, 4), [i.label for i in inst]))
    assert any(len(lab) == 0 for _, lab in expected), "fixture should contain a background image"
    for fmt, root in synthetic.items():
        split = _read(fmt, root, "train")
        assert split.class_names == ["circle", "square", "triangle"]
        assert len(split.records) == SPLITS["train"]
        for rec, (boxes, labels) in zip(split.records, expected):
            assert rec.labels.tolist() == labels, fmt
            np.testing.assert_allclose(rec.boxes, boxes, atol=1e-3, err_msg=fmt)
            assert rec.size == (48, 64)
            assert rec.path.is_file()


def test_synthetic_folder_is_reused_and_never_overwrites_foreign_data(tmp_path: Path) -> None:
    root = write_synthetic_detection(tmp_path / "d", "yolo", splits={"train": 2}, image_size=32)
    stamp = (root / "images/train/000000.png").stat().st_mtime_ns
    write_synthetic_detection(tmp_path / "d", "yolo", splits={"train": 2}, image_size=32)
    assert (root / "images/train/000000.png").stat().st_mtime_ns == stamp  # reused
    write_synthetic_detection(tmp_path / "d", "yolo", splits={"train": 3}, image_size=32)
    assert len(list((root / "images/train").iterdir())) == 3  # other settings: regenerated
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/photo.jpg").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="not a synthetic dataset"):
        write_synthetic_detection(tmp_path / "mine", "coco")


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo"])
def test_datamodule_batches(fmt: str, synthetic: dict[str, Path]) -> None:
    dm = DetectionDataModule(format=fmt, root=str(synthetic[fmt]), image_size=96, batch_size=3,
                             class_names=["circle", "square", "triangle"] if fmt == "voc" else None)
    if fmt != "coco":  # VOC (given list) and YOLO (the YAML) know their classes before setup
        assert dm.num_classes == 3
    dm.setup("fit")
    assert dm.num_classes == 3 and dm.class_names == ["circle", "square", "triangle"]
    images, targets = next(iter(dm.val_dataloader()))
    assert isinstance(images, list) and len(images) == 3 and isinstance(targets, list)
    for img, t in zip(images, targets):
        assert img.dtype == torch.float32 and img.shape == (3, 96, 96)
        assert abs(float(img.mean())) < 3  # normalised, not 0..255
        assert t["boxes"].dtype == torch.float32 and t["boxes"].shape[1] == 4
        assert t["labels"].dtype == torch.int64 and t["labels"].shape == t["boxes"].shape[:1]
        assert t["orig_size"] == (48, 64) and t["size"] == (96, 96)
        assert Path(t["path"]).is_file() and isinstance(t["image_id"], int)
        # letterbox 64x48 -> 96x72, centred: rows 12..84
        torch.testing.assert_close(t["image_box"], torch.tensor([0.0, 12.0, 96.0, 84.0]))
    split = dm.splits["val"]
    for t in targets:
        rec = next(r for r in split.records if str(r.path) == t["path"])
        back = boxes_to_original(t["boxes"], t["image_box"], t["orig_size"])
        torch.testing.assert_close(back, torch.from_numpy(rec.boxes), atol=1e-3, rtol=0)
    if fmt == "coco":
        assert dm.category_ids == [1, 2, 3]


def test_collate_mixed_sizes(synthetic: dict[str, Path], tmp_path: Path) -> None:
    recs = [DetectionRecord(tmp_path / f"{i}.png", i, np.array([[2, 2, 10, 12]], np.float32),
                            np.array([1]), None) for i in range(2)]
    Image.new("RGB", (40, 30)).save(recs[0].path)
    Image.new("RGB", (20, 50)).save(recs[1].path)
    ds = DetectionDataset(recs, build_detection_transform(None, "none"))
    images, targets = detection_collate([ds[0], ds[1]])
    assert [tuple(i.shape) for i in images] == [(3, 30, 40), (3, 50, 20)]
    assert [t["size"] for t in targets] == [(30, 40), (50, 20)]
    torch.testing.assert_close(targets[1]["boxes"], torch.tensor([[2.0, 2.0, 10.0, 12.0]]))


# -- transforms -------------------------------------------------------------------------------------
def test_resize_modes_map_back_to_file_pixels() -> None:
    image = np.zeros((60, 100, 3), np.uint8)
    boxes = np.array([[10, 5, 40, 55], [70, 20, 100, 60]], np.float32)
    for mode, size, frame in (("letterbox", 64, [0.0, 12.8, 64.0, 51.2]), ("stretch", 64, [0.0, 0.0, 64.0, 64.0]),
                              ("shortest_edge", (40, 60), [0.0, 0.0, 60.0, 36.0])):
        t = build_detection_transform(size, mode)
        img, target = apply_detection_transform(t, image, boxes, np.array([0, 1]))
        assert img.shape[-2:] == (int(frame[3] - frame[1]) if mode == "shortest_edge" else 64, int(frame[2]))
        torch.testing.assert_close(target["image_box"], torch.tensor(frame), atol=0.6, rtol=0)
        back = boxes_to_original(target["boxes"], target["image_box"], (60, 100))
        torch.testing.assert_close(back, torch.from_numpy(boxes), atol=1e-3, rtol=0)


def test_flip_moves_boxes_with_the_image() -> None:
    image = np.zeros((32, 64, 3), np.uint8)
    image[20:30, 10:30] = 255
    t = build_detection_transform(None, "none", train=True,
                                  augment=AugmentConfig(hflip=1.0, affine_p=0.0, color_p=0.0))
    img, target = apply_detection_transform(t, image, np.array([[10, 20, 30, 30]], np.float32), np.array([2]))
    torch.testing.assert_close(target["boxes"], torch.tensor([[34.0, 20.0, 54.0, 30.0]]))
    assert target["labels"].tolist() == [2]
    bright = (img[0] > 0).nonzero()
    assert int(bright[:, 1].min()) == 34 and int(bright[:, 1].max()) == 53  # the pixels moved too


def test_scale_and_jitter_keep_boxes_on_the_object() -> None:
    rng = np.random.default_rng(0)
    image = np.full((64, 64, 3), 30, np.uint8)
    image[16:40, 20:44] = 220
    t = build_detection_transform(64, "letterbox", train=True, augment=AugmentConfig(
        hflip=0.5, scale=(0.7, 1.3), translate=0.1, affine_p=1.0, color_jitter=0.3, color_p=1.0), seed=1)
    for _ in range(5):
        img, target = apply_detection_transform(t, image, np.array([[20, 16, 44, 40]], np.float32), np.array([0]))
        (x1, y1, x2, y2), = target["boxes"].round().long().tolist()
        inside = img[0, y1 + 2 : y2 - 2, x1 + 2 : x2 - 2]
        outside = img[0, :, : max(x1 - 3, 1)]
        assert inside.mean() > outside.mean() + 1.0
    del rng


def test_clip_and_drop_after_geometry() -> None:
    shift = A.Compose(
        [A.Affine(translate_px={"x": 40, "y": 0}, p=1.0), ToTensorV2()],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels", "kinds"], clip=True,
                                 filter_invalid_bboxes=True),
    )
    image = np.zeros((32, 64, 3), np.uint8)
    boxes = np.array([[10, 10, 30, 20], [50, 10, 60, 20]], np.float32)
    _, target = apply_detection_transform(shift, image, boxes, np.array([0, 1]))
    torch.testing.assert_close(target["boxes"], torch.tensor([[50.0, 10.0, 64.0, 20.0]]))  # clipped
    assert target["labels"].tolist() == [0]  # the box pushed out of the image is gone


def test_proposals_call_site(synthetic: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, object] = {}

    class FakeCache:
        def __init__(self, split, image_paths, cache_dir, **settings):
            calls.update(split=split, n=len(image_paths), cache_dir=Path(cache_dir), settings=settings)

        def ensure(self) -> None:
            calls["ensured"] = True

        def __call__(self, path: Path) -> np.ndarray:
            return np.array([[0, 0, 32, 24], [10, 10, 10, 20], [60, 40, 90, 70]], np.float32)

    import visiontasks.data.proposals as proposals

    monkeypatch.setattr(proposals, "ProposalCache", FakeCache)
    root = synthetic["yolo"]
    dm = DetectionDataModule(format="yolo", root=str(root), image_size=128, resize="stretch",
                             proposals={"mode": "fast"}, augment=False)
    dm.setup("validate")
    assert calls == {"split": "val", "n": SPLITS["val"], "cache_dir": root / "proposals",
                     "settings": {"mode": "fast"}, "ensured": True}
    _, target = dm.datasets["val"][0]
    # 64x48 -> 128x128: x * 2, y * 8/3; the zero-width box is dropped, the last one clipped
    torch.testing.assert_close(target["proposals"], torch.tensor([[0.0, 0.0, 64.0, 64.0],
                                                                  [120.0, 320 / 3, 128.0, 128.0]]))
    rec = dm.splits["val"].records[0]
    assert len(target["boxes"]) == len(rec.boxes)  # proposals never mix with the ground truth


# -- bad input --------------------------------------------------------------------------------------
def _coco(tmp_path: Path, images: list[dict], anns: list[dict], cats=None) -> Path:
    (tmp_path / "images").mkdir(exist_ok=True)
    for img in images:
        p = tmp_path / "images" / img["file_name"]
        if ".." not in img["file_name"]:
            Image.new("RGB", (img["width"], img["height"])).save(p)
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": cats or [{"id": 1, "name": "a"}, {"id": 7, "name": "b"}]}))
    return path


def test_coco_degenerate_boxes_dropped_with_count(tmp_path: Path) -> None:
    ann = _coco(tmp_path, [{"id": 1, "file_name": "x.png", "width": 40, "height": 30}], [
        {"id": 1, "image_id": 1, "category_id": 7, "bbox": [5, 5, 10, 10]},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 10]},
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, -3]},
        {"id": 4, "image_id": 1, "category_id": 1, "bbox": [45, 5, 10, 10]},  # outside: zero after clip
        {"id": 5, "image_id": 1, "category_id": 1, "bbox": [35, 25, 10, 10]},  # clipped to 5x5
    ])
    with pytest.warns(UserWarning, match="dropped 3 degenerate"):
        split = read_coco(ann, "images", tmp_path)
    assert split.dropped_boxes == 3
    assert split.records[0].labels.tolist() == [1, 0]  # category 7 is the second class
    np.testing.assert_allclose(split.records[0].boxes, [[5, 5, 15, 15], [35, 25, 40, 30]])


def test_coco_errors_name_files(tmp_path: Path) -> None:
    img = [{"id": 1, "file_name": "x.png", "width": 40, "height": 30}]
    ann = _coco(tmp_path, img, [{"id": 9, "image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5]}])
    with pytest.raises(DatasetFormatError, match=r"ann\.json: annotation 9 has category_id 3"):
        read_coco(ann, "images", tmp_path)
    ann = _coco(tmp_path, [*img, {"id": 2, "file_name": "gone.png", "width": 4, "height": 4}], [])
    (tmp_path / "images/gone.png").unlink()
    with pytest.raises(DatasetFormatError, match=r"ann\.json: image id 2 names .*gone\.png, which does not exist"):
        read_coco(ann, "images", tmp_path)
    ann = _coco(tmp_path, [{"id": 1, "file_name": "../../etc/passwd", "width": 4, "height": 4}], [])
    with pytest.raises(DatasetFormatError, match="outside the dataset root"):
        read_coco(ann, "images", tmp_path)


def _voc(tmp_path: Path, objects: str, filename: str = "a.png") -> Path:
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30)).save(tmp_path / "JPEGImages/a.png")
    (tmp_path / "ImageSets/Main/train.txt").write_text("a\n")
    (tmp_path / "Annotations/a.xml").write_text(
        f"<annotation><filename>{filename}</filename><size><width>40</width><height>30</height>"
        f"<depth>3</depth></size>{objects}</annotation>"
    )
    return tmp_path


def _obj(name: str, box: tuple, difficult: int = 0) -> str:
    x1, y1, x2, y2 = box
    return (f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{x1}</xmin>"
            f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")


def test_voc_reader_and_bad_input(tmp_path: Path) -> None:
    root = _voc(tmp_path, _obj("cat", (1, 1, 10, 20)) + _obj("dog", (5, 5, 4, 9)) + _obj("dog", (2, 2, 6, 6), 1))
    with pytest.warns(UserWarning, match="dropped 1 degenerate"):
        split = read_voc(root, "train", ["cat", "dog"])
    assert split.records[0].labels.tolist() == [0]  # degenerate dropped, difficult skipped
    np.testing.assert_allclose(split.records[0].boxes, [[0, 0, 10, 20]])  # 1-based inclusive -> edges
    assert read_voc(root, "train", ["cat", "dog"], keep_difficult=True).records[0].labels.tolist() == [0, 1]
    _voc(tmp_path, _obj("horse", (1, 1, 10, 20)))
    with pytest.raises(DatasetFormatError, match=r"a\.xml: object class 'horse' is not in the class list"):
        read_voc(root, "train", ["cat", "dog"])
    _voc(tmp_path, "", filename="missing.png")
    with pytest.raises(DatasetFormatError, match=r"a\.xml: names image .*missing\.png, which does not exist"):
        read_voc(root, "train", ["cat"])
    _voc(tmp_path, "", filename="../../secret.png")
    with pytest.raises(DatasetFormatError, match="outside the dataset root"):
        read_voc(root, "train", ["cat"])


def _yolo(tmp_path: Path, labels: dict[str, str], images: dict[str, Image.Image], train="images/train") -> Path:
    (tmp_path / "images/train").mkdir(parents=True, exist_ok=True)
    (tmp_path / "labels/train").mkdir(parents=True, exist_ok=True)
    for name, img in images.items():
        img.save(tmp_path / "images/train" / name)
    for name, text in labels.items():
        (tmp_path / "labels/train" / name).write_text(text)
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": train, "names": ["a", "b"]}))
    return tmp_path


def test_yolo_background_orphans_and_degenerate(tmp_path: Path) -> None:
    img = Image.new("RGB", (100, 50))
    root = _yolo(tmp_path, {
        "x.txt": "1 0.5 0.5 0.2 0.4\n0 0.5 0.5 0.0 0.4\n\n0 0.1 0.2 0.1 0.2 0.3 0.4\n",  # box, degenerate, polygon
        "empty.txt": "",
        "orphan.txt": "0 0.5 0.5 0.1 0.1\n",
    }, {"x.png": img, "empty.png": img, "nolabel.png": img})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        split = read_yolo(root, "train")
    messages = " | ".join(str(w.message) for w in caught)
    assert "1 label file(s) have no image" in messages and "orphan.txt" in messages
    assert "dropped 1 degenerate" in messages
    by_name = {r.path.name: r for r in split.records}
    assert sorted(by_name) == ["empty.png", "nolabel.png", "x.png"]  # images make the dataset
    assert len(by_name["empty.png"].labels) == 0 and len(by_name["nolabel.png"].labels) == 0
    np.testing.assert_allclose(by_name["x.png"].boxes, [[40, 15, 60, 35], [10, 10, 30, 20]], atol=1e-4)
    assert by_name["x.png"].labels.tolist() == [1, 0]


def test_yolo_bad_class_id_names_file_and_line(tmp_path: Path) -> None:
    root = _yolo(tmp_path, {"x.txt": "0 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2 0.2\n"}, {"x.png": Image.new("RGB", (8, 8))})
    with pytest.raises(DatasetFormatError, match=r"labels/train/x\.txt, line 2: class id 2 is outside"):
        read_yolo(root, "train")
    (root / "labels/train/x.txt").write_text("0 0.5 0.5 0.2\n")
    with pytest.raises(DatasetFormatError, match=r"x\.txt, line 1: expected 'class cx cy w h'"):
        read_yolo(root, "train")


def test_yolo_split_escaping_root_refused(tmp_path: Path) -> None:
    root = _yolo(tmp_path / "ds", {}, {"x.png": Image.new("RGB", (8, 8))}, train="../elsewhere")
    with pytest.raises(DatasetFormatError, match="outside the dataset root"):
        read_yolo(root, "train")
    (root / "list.txt").write_text("./images/train/x.png\n../../../etc/hosts\n")
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "list.txt", "names": ["a"]}))
    with pytest.raises(DatasetFormatError, match=r"list\.txt, line 2: path .* outside the dataset root"):
        read_yolo(root, "train")


def test_grey_rgba_palette_load_as_rgb(tmp_path: Path) -> None:
    images = {"grey.png": Image.new("L", (20, 10), 128), "rgba.png": Image.new("RGBA", (20, 10), (1, 2, 3, 4)),
              "pal.png": Image.new("RGB", (20, 10), (200, 10, 10)).convert("P")}
    root = _yolo(tmp_path, {"grey.txt": "0 0.5 0.5 0.5 0.5\n"}, images)
    dm = DetectionDataModule(format="yolo", root=str(root), val="train", image_size=32, augment=False)
    dm.setup("validate")
    for i in range(3):
        img, _ = dm.datasets["val"][i]
        assert img.shape == (3, 32, 32)


def test_truncated_image_error_or_skip(tmp_path: Path) -> None:
    root = _yolo(tmp_path, {}, {"good.png": Image.new("RGB", (16, 16)), "bad.png": Image.new("RGB", (64, 64))})
    data = (root / "images/train/bad.png").read_bytes()
    (root / "images/train/bad.png").write_bytes(data[: len(data) // 2])
    dm = DetectionDataModule(format="yolo", root=str(root), val="train", image_size=32)
    dm.setup("validate")
    with pytest.raises(ImageReadError, match=r"bad\.png"):
        for i in range(len(dm.datasets["val"])):
            dm.datasets["val"][i]
    dm = DetectionDataModule(format="yolo", root=str(root), val="train", image_size=32, skip_bad_images=True)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image"):
        dm.setup("validate")
    assert [r.path.name for r in dm.splits["val"].records] == ["good.png"]


def test_predict_on_a_plain_image_folder(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (30, 20)).save(tmp_path / "photos/a.jpg")
    dm = DetectionDataModule(format="coco", root=str(tmp_path), predict={"images": "photos"},
                             class_names=["a", "b"], image_size=32)
    dm.setup("predict")
    images, targets = next(iter(dm.predict_dataloader()))
    assert images[0].shape == (3, 32, 32) and targets[0]["boxes"].shape == (0, 4)
    assert targets[0]["orig_size"] == (20, 30)
