"""Instance masks in the detection data: COCO polygons / RLE / crowd, YOLO polygons, the synthetic
writer's exact masks, masks through the transforms, and bad mask annotations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import visiontasks  # noqa: F401  (quiet albumentations)
from visiontasks.data.detection import (
    AugmentConfig,
    DatasetFormatError,
    DetectionDataModule,
    apply_detection_transform,
    build_detection_transform,
    read_coco,
    read_yolo,
    write_synthetic_detection,
)
from visiontasks.data.detection.masks import decode_masks, encode_mask
from visiontasks.errors import InvalidInputError
from visiontasks.ops import instance_masks_to_original

H, W = 40, 60


def _coco(root: Path, anns: list[dict], size: tuple[int, int] = (H, W)) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "images" / "a.png")
    data = {"images": [{"id": 1, "file_name": "a.png", "height": size[0], "width": size[1]}],
            "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}],
            "annotations": [{"id": i + 1, "image_id": 1, "category_id": 3, "iscrowd": 0, **a} for i, a in enumerate(anns)]}
    path = root / "instances.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_polygons_rle_and_crowd(tmp_path: Path) -> None:
    square = np.zeros((H, W), np.uint8)
    square[5:15, 20:40] = 1
    anns = [
        {"bbox": [2, 3, 10, 10], "segmentation": [[2, 3, 12, 3, 12, 13, 2, 13]]},  # a polygon, pixels
        {"bbox": [20, 5, 20, 10], "segmentation": encode_mask(square), "category_id": 7},  # compressed RLE
        {"bbox": [0, 0, 60, 40], "segmentation": encode_mask(1 - square), "iscrowd": 1},  # crowd: skipped
    ]
    path = _coco(tmp_path, anns)
    plain = read_coco(path, "images", tmp_path)
    assert plain.records[0].masks is None  # without masks: nothing read
    split = read_coco(path, "images", tmp_path, masks=True)
    rec = split.records[0]
    assert rec.labels.tolist() == [0, 1] and len(rec.masks) == 2
    masks = decode_masks(rec.masks, rec.size)
    assert masks.shape == (2, H, W) and masks.dtype == np.uint8
    assert np.array_equal(masks[1], square)
    ys, xs = np.nonzero(masks[0])
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == (2, 3, 11, 12)  # the polygon's pixels


@pytest.mark.parametrize("seg, message", [
    ([[1, 1, 5, 5]], "a polygon needs at least 3 points"),
    ([[1, 1, 5, 1, 5, 50]], "polygon point outside the 60x40 image"),
    ({"size": [41, 60], "counts": "abc"}, r"RLE size \[41, 60\] .* disagrees with the image's \[40, 60\]"),
    ("nonsense", "segmentation must be a list of polygons or an RLE"),
])
def test_bad_coco_masks_name_the_file_and_annotation(tmp_path: Path, seg, message: str) -> None:
    path = _coco(tmp_path, [{"bbox": [1, 1, 4, 4], "segmentation": seg}])
    with pytest.raises(DatasetFormatError, match=f"instances.json: annotation 1: {message}"):
        read_coco(path, "images", tmp_path, masks=True)


def _yolo(root: Path, lines: list[str], names: object) -> Path:
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "images" / "train" / "a.png")
    (root / "labels" / "train" / "a.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images/train", "names": names}))
    return root


def test_yolo_polygons_with_gapped_class_ids(tmp_path: Path) -> None:
    """Ultralytics' segmentation YAMLs (e.g. COCO128's) number classes by COCO id (1, 3, ...)."""
    root = _yolo(tmp_path, ["3 0.1 0.1 0.5 0.1 0.5 0.5", "1 0.5 0.5 0.9 0.5 0.9 0.9 0.5 0.9"], {1: "person", 3: "car"})
    split = read_yolo(root, "train", masks=True)
    rec = split.records[0]
    assert split.class_names == ["person", "car"] and split.category_ids == [1, 3]
    assert rec.labels.tolist() == [1, 0]
    np.testing.assert_allclose(rec.boxes, [[6, 4, 30, 20], [30, 20, 54, 36]])
    masks = decode_masks(rec.masks, rec.size)
    assert masks.shape == (2, H, W) and masks[1, 22:34, 32:52].all() and not masks[1, :18].any()
    assert read_yolo(root, "train").records[0].masks is None


@pytest.mark.parametrize("line, message", [
    ("0 0.5 0.5 0.2 0.2", r"a\.txt, line 1: an instance mask needs a polygon .* at least 3 points"),
    ("0 0.1 0.1 0.5 0.1 1.5 0.5", r"a\.txt, line 1: coordinate 1.5 > 1"),
    ("2 0.1 0.1 0.5 0.1 0.5 0.5", r"a\.txt, line 1: class id 2 is outside the 2 classes"),
])
def test_bad_yolo_polygons_name_the_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    root = _yolo(tmp_path, [line], ["a", "b"])
    with pytest.raises(DatasetFormatError, match=message):
        read_yolo(root, "train", masks=True)


def test_formats_without_masks_refuse_them(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="format 'voc' has no instance masks"):
        DetectionDataModule(format="voc", root=str(tmp_path), masks=True)


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    image = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    masks = np.zeros((2, H, W), np.uint8)
    masks[0, 5:15, 4:14] = 1
    masks[1, 20:36, 40:56] = 1
    boxes = np.array([[4, 5, 14, 15], [40, 20, 56, 36]], np.float32)
    return image, masks, boxes, np.array([0, 1])


def test_masks_follow_resize_and_flip() -> None:
    image, masks, boxes, labels = _scene()
    flip = AugmentConfig(hflip=1.0, affine_p=0.0, color_p=0.0)
    t = build_detection_transform((80, 120), "stretch", train=True, augment=flip)
    img, target = apply_detection_transform(t, image, boxes, labels, masks=masks)
    assert target["masks"].shape == (2, 80, 120) and target["masks"].dtype == torch.uint8
    for box, mask in zip(target["boxes"], target["masks"]):  # each mask fills its (moved) box
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1] == box.round().int().tolist()
    assert target["masks"][0, 10:30, 92:112].all()  # flipped: x 8..28 -> 120 - 28 .. 120 - 8


def test_an_instance_whose_mask_vanishes_is_dropped_with_its_box() -> None:
    image, masks, boxes, labels = _scene()
    masks[1] = 0  # its box survives the transform, its mask has no pixel
    img, target = apply_detection_transform(build_detection_transform(None, "none"), image, boxes, labels, masks=masks)
    assert target["labels"].tolist() == [0] and target["boxes"].shape == (1, 4) and target["masks"].shape == (1, H, W)
    # a box pushed out of the image by the affine takes its mask with it (ids keep them paired)
    shift = AugmentConfig(hflip=0.0, scale=(1.0, 1.0), translate=0.0, affine_p=0.0, color_p=0.0)
    t = build_detection_transform((H, W), "letterbox", train=True, augment=shift)
    _, target = apply_detection_transform(t, image, boxes, labels, masks=np.zeros((2, H, W), np.uint8))
    assert len(target["labels"]) == 0 and target["masks"].shape == (0, H, W)


def test_masks_back_to_file_pixels_through_a_letterbox() -> None:
    image, masks, boxes, labels = _scene()
    t = build_detection_transform(80, "letterbox")  # 40x60 -> 53x80 inside 80x80
    _, target = apply_detection_transform(t, image, boxes, labels, masks=masks)
    back = instance_masks_to_original(target["masks"], target["image_box"], (H, W))
    assert back.shape == (2, H, W)
    assert (back.numpy() == masks).mean() > 0.99


def test_synthetic_masks_through_the_datamodule(tmp_path: Path) -> None:
    dm = DetectionDataModule(format="coco", root=str(tmp_path / "s"), image_size=64, masks=True, batch_size=2,
                             synthetic=dict(splits={"train": 3, "val": 2}, image_size=48, num_classes=2))
    dm.prepare_data()
    dm.setup("fit")
    images, targets = next(iter(dm.loader("val")))
    for im, t in zip(images, targets):
        assert t["masks"].shape == (len(t["boxes"]), *im.shape[-2:]) and t["masks"].dtype == torch.uint8
        for box, mask in zip(t["boxes"], t["masks"]):  # the exact shape mask lies in its tight box
            ys, xs = torch.nonzero(mask, as_tuple=True)
            assert abs(xs.min().item() - box[0].item()) <= 1.5 and abs(ys.max().item() + 1 - box[3].item()) <= 1.5
    plain = DetectionDataModule(format="coco", root=str(tmp_path / "s"), image_size=64, batch_size=2)
    plain.setup("validate")
    assert "masks" not in plain.datasets["val"][0][1]
    with pytest.raises(ValueError, match="coco layout"):
        write_synthetic_detection(tmp_path / "y", "yolo", masks=True)
