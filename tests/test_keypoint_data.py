"""Keypoints in the detection data: COCO person-keypoints JSON and YOLO pose labels read with known
values, the synthetic corner shapes, the flip swapping mirror points, the evaluation geometry, bad
keypoint annotations (readers and ``visiontasks check``), and the datamodule's keypoint facts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import visiontasks  # noqa: F401  (quiet albumentations)
from visiontasks.cli import main
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
from visiontasks.data.detection.coco import coco_keypoint_spec
from visiontasks.data.detection.keypoints import COCO_PERSON_SIGMAS, flip_idx_from_names
from visiontasks.data.detection.yolo import yolo_keypoint_spec
from visiontasks.errors import InvalidInputError

H, W = 40, 60
PERSON = ["nose", "left_eye", "right_eye"]


# -- COCO ------------------------------------------------------------------------------------------------
def _coco(root: Path, anns: list[dict], categories: list[dict] | None = None) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "images" / "a.png")
    cats = categories or [{"id": 1, "name": "person", "keypoints": PERSON, "skeleton": [[1, 2], [1, 3]]},
                          {"id": 5, "name": "ball"}]
    data = {"images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}], "categories": cats,
            "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [5, 2, 30, 20], **a}
                            for i, a in enumerate(anns)]}
    path = root / "person_keypoints.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_keypoints_known_values(tmp_path: Path) -> None:
    path = _coco(tmp_path, [
        {"keypoints": [10, 5, 2, 20.5, 6, 1, 7, 7, 0], "num_keypoints": 2},  # v = 0 with x, y given: (0, 0, 0)
        {"category_id": 5, "bbox": [40, 20, 10, 10]},  # a class without keypoints: none labelled
        {"keypoints": [60, 40, 2, 0, 0, 0, 0, 0, 0]},  # on the far corner (x = W, y = H): inside
    ])
    rec = read_coco(path, "images", tmp_path, keypoints=True).records[0]
    assert rec.keypoints.dtype == np.float32 and rec.keypoints.shape == (3, 3, 3)
    np.testing.assert_array_equal(rec.keypoints[0], [[10, 5, 2], [20.5, 6, 1], [0, 0, 0]])
    np.testing.assert_array_equal(rec.keypoints[1], np.zeros((3, 3)))
    np.testing.assert_array_equal(rec.keypoints[2, 0], [60, 40, 2])
    assert read_coco(path, "images", tmp_path).records[0].keypoints is None  # off: not read
    spec = coco_keypoint_spec(json.loads(path.read_text()), str(path))
    assert spec.names == PERSON and spec.skeleton == [(0, 1), (0, 2)]  # COCO's 1-based pairs -> 0-based
    assert spec.flip_idx == [0, 2, 1]  # from the left/right names
    assert spec.oks_sigmas() == [1 / 3] * 3 and spec.has_sides()


def test_coco_degenerate_box_takes_its_keypoints(tmp_path: Path) -> None:
    path = _coco(tmp_path, [{"keypoints": [10, 5, 2] * 3}, {"bbox": [5, 5, 0, 4], "keypoints": [1, 1, 2] * 3}])
    with pytest.warns(UserWarning, match="dropped 1 degenerate"):
        rec = read_coco(path, "images", tmp_path, keypoints=True).records[0]
    assert rec.boxes.shape == (1, 4) and rec.keypoints.shape == (1, 3, 3) and rec.keypoints[0, 0, 0] == 10


@pytest.mark.parametrize("ann, message", [
    ({"keypoints": [1, 2, 2, 3, 4, 2]}, "annotation 1 has 6 keypoint values; the categories declare 3 points, so 3 x 3 = 9"),
    ({"keypoints": [1, 2, 3, 3, 4, 2, 0, 0, 0]}, "annotation 1: keypoint 0 has visibility 3; v must be 0"),
    ({"keypoints": [1, 2, 2, 61.5, 4, 1, 0, 0, 0]}, r"annotation 1: keypoint 1 at \(61.5, 4\) lies outside the 60x40 image \(tolerance 1\)"),
    ({"keypoints": [1, 2, 2, 3, 4, 2, 0, 0, 0], "num_keypoints": 3}, "annotation 1: num_keypoints 3 but 2 points have v > 0"),
])  # fmt: skip
def test_bad_coco_keypoints_name_file_and_annotation(tmp_path: Path, ann: dict, message: str) -> None:
    path = _coco(tmp_path, [ann])
    with pytest.raises(DatasetFormatError, match=f"person_keypoints.json: {message}"):
        read_coco(path, "images", tmp_path, keypoints=True)


@pytest.mark.parametrize("cats, message", [
    ([{"id": 1, "name": "person", "keypoints": PERSON}, {"id": 2, "name": "hand", "keypoints": ["a", "b"]}],
     r"categories 1 and 2 declare different keypoints \(3 vs 2 points\)"),
    ([{"id": 1, "name": "person"}], "no category declares 'keypoints'"),
    ([{"id": 1, "name": "person", "keypoints": PERSON, "skeleton": [[0, 1]]}], r"skeleton pair \[0, 1\] names a point outside 1..3 \(1-based\)"),
    ([{"id": 1, "name": "person", "keypoints": PERSON, "flip_idx": [0, 1, 1]}], "flip_idx .* must list each of the 3 keypoints"),
])  # fmt: skip
def test_bad_coco_keypoint_categories(tmp_path: Path, cats: list[dict], message: str) -> None:
    path = _coco(tmp_path, [], cats)
    with pytest.raises(DatasetFormatError, match=message):
        read_coco(path, "images", tmp_path, keypoints=True)


def test_sigmas_rule(tmp_path: Path) -> None:
    names = [f"p{i}" for i in range(17)]
    path = _coco(tmp_path, [], [{"id": 1, "name": "person", "keypoints": names}])
    assert coco_keypoint_spec(json.loads(path.read_text()), "x").oks_sigmas() == COCO_PERSON_SIGMAS
    path = _coco(tmp_path, [], [{"id": 1, "name": "person", "keypoints": PERSON, "sigmas": [0.1, 0.2, 0.3]}])
    assert coco_keypoint_spec(json.loads(path.read_text()), "x").oks_sigmas() == [0.1, 0.2, 0.3]


def test_flip_idx_from_names() -> None:
    assert flip_idx_from_names(["nose", "left_eye", "right_eye", "Left Hand", "Right Hand"]) == [0, 2, 1, 4, 3]
    assert flip_idx_from_names(["top_left", "top_right", "bottom_right", "bottom_left"]) == [1, 0, 3, 2]
    assert flip_idx_from_names(["left_eye", "nose"]) is None  # no counterpart
    assert flip_idx_from_names(["a", "b", "bright"]) is None  # "bright" is not a side


# -- YOLO ------------------------------------------------------------------------------------------------
def _yolo(root: Path, lines: list[str], **extra: object) -> Path:
    (root / "images" / "train").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "images" / "train" / "a.png")
    (root / "labels" / "train" / "a.txt").write_text("\n".join(lines) + "\n")
    cfg = {"path": ".", "train": "images/train", "val": "images/train", "names": {0: "person", 1: "ball"},
           "kpt_shape": [3, 3], "flip_idx": [0, 2, 1], **extra}
    (root / "data.yaml").write_text(yaml.safe_dump({k: v for k, v in cfg.items() if v is not None}))
    return root


def test_yolo_pose_known_values(tmp_path: Path) -> None:
    root = _yolo(tmp_path, ["0 0.5 0.5 0.4 0.5 0.5 0.25 2 0.25 0.5 1 0 0 0", "1 0.2 0.2 0.1 0.1 0 0 0 0 0 0 0 0 0"],
                 kpt_names={0: PERSON, 1: PERSON})
    rec = read_yolo(root, "train", keypoints=True).records[0]
    np.testing.assert_allclose(rec.boxes[0], [18, 10, 42, 30])
    np.testing.assert_allclose(rec.keypoints[0], [[30, 10, 2], [15, 20, 1], [0, 0, 0]])
    np.testing.assert_array_equal(rec.keypoints[1], np.zeros((3, 3)))
    spec = yolo_keypoint_spec(root)
    assert spec.names == PERSON and spec.flip_idx == [0, 2, 1] and spec.skeleton == []
    assert read_yolo(root, "train").records[0].keypoints is None  # off: the line is still read as a box
    # x y only (kpt_shape [P, 2]): every point labelled, as Ultralytics' loss counts them; default names
    root2 = _yolo(tmp_path / "xy", ["0 0.5 0.5 0.4 0.5 0.5 0.25 0.25 0.5 1 1"], kpt_shape=[3, 2], flip_idx=None)
    rec = read_yolo(root2, "train", keypoints=True).records[0]
    np.testing.assert_allclose(rec.keypoints[0], [[30, 10, 2], [15, 20, 2], [60, 40, 2]])
    spec = yolo_keypoint_spec(root2)
    assert spec.names == ["0", "1", "2"] and spec.flip_idx is None and not spec.has_sides()


@pytest.mark.parametrize("line, extra, message", [
    ("0 0.5 0.5 0.4 0.5 0.5 0.25 2 0.25 0.5", {},
     r"a\.txt, line 1: kpt_shape \[3, 3\] of the dataset YAML needs 5 \+ 3 x 3 = 14 values .* got 10"),
    ("0 0.5 0.5 0.4 0.5 0.5 0.25 2 0.25 0.5 1 0 0 0", {"kpt_shape": [3, 2]}, r"a\.txt, line 1: kpt_shape \[3, 2\] .* = 11 values"),
    ("0 0.5 0.5 0.4 0.5 0.5 0.25 5 0.25 0.5 1 0 0 0", {}, r"a\.txt, line 1: keypoint 0 has visibility 5"),
    ("0 0.5 0.5 0.4 0.5 0.5 1.2 2 0.25 0.5 1 0 0 0", {}, r"a\.txt, line 1: keypoint 0 at \(0.5, 1.2\) lies outside the image"),
    ("0 0.5 0.5 0.4 0.5 0.5 0.25 2 0.25 0.5 1 0 0 0", {"kpt_shape": None}, r"data\.yaml: keypoints: true needs kpt_shape"),
    ("0 0.5 0.5 0.4 0.5 0.5 0.25 2 0.25 0.5 1 0 0 0", {"kpt_shape": [3, 4]}, r"data\.yaml: kpt_shape must be \[P, 2\] or \[P, 3\]"),
    ("0 0.5 0.5 0.4 0.5 0.5 0.25 2 0.25 0.5 1 0 0 0", {"flip_idx": [1, 2, 0]}, r"data\.yaml: flip_idx \[1, 2, 0\] must pair points"),
    ("0 0.5 0.5 0.4 0.5 0.5 0.25 2 0.25 0.5 1 0 0 0", {"kpt_names": ["a", "b"]}, r"data\.yaml: kpt_names has 2 names but kpt_shape says 3"),
])  # fmt: skip
def test_bad_yolo_pose_lines(tmp_path: Path, line: str, extra: dict, message: str) -> None:
    root = _yolo(tmp_path, [line], **extra)
    with pytest.raises(DatasetFormatError, match=message):
        read_yolo(root, "train", keypoints=True)


def test_invisible_points_may_sit_anywhere_but_stay_zero(tmp_path: Path) -> None:
    root = _yolo(tmp_path, ["0 0.5 0.5 0.4 0.5 0.5 0.25 2 0.25 0.5 1 1.7 3 0"])  # v = 0 outside: not an error
    rec = read_yolo(root, "train", keypoints=True).records[0]
    np.testing.assert_array_equal(rec.keypoints[0, 2], [0, 0, 0])


def test_formats_without_keypoints_refuse_them(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="format 'voc' has no keypoints"):
        DetectionDataModule(format="voc", root=str(tmp_path), keypoints=True)


# -- transforms ------------------------------------------------------------------------------------------
def _box_and_corners() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    image = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    boxes = np.array([[10, 5, 30, 25], [40, 12, 57, 37]], np.float32)
    corners = np.stack([[[b[0], b[1], 2], [b[2], b[1], 2], [b[2], b[3], 1], [b[0], b[3], 2]] for b in boxes])
    return image, boxes, np.array([0, 1]), corners.astype(np.float32)


@pytest.mark.parametrize("size, resize, tol", [((80, 120), "stretch", 1e-4), (96, "letterbox", 0.5),
                                               ((30, 50), "shortest_edge", 0.5), (None, "none", 0.0)])
def test_eval_transform_keeps_points_on_box_corners_and_maps_back(size, resize: str, tol: float) -> None:
    image, boxes, labels, corners = _box_and_corners()
    t = build_detection_transform(size, resize, keypoints=True)
    img, target = apply_detection_transform(t, image, boxes, labels, keypoints=corners)
    kp, b = target["keypoints"], target["boxes"]
    assert kp.shape == (2, 4, 3) and kp.dtype == torch.float32
    expected = torch.stack([torch.stack([b[:, 0], b[:, 1]], -1), torch.stack([b[:, 2], b[:, 1]], -1),
                            torch.stack([b[:, 2], b[:, 3]], -1), torch.stack([b[:, 0], b[:, 3]], -1)], 1)
    torch.testing.assert_close(kp[..., :2], expected, atol=tol, rtol=0)
    assert kp[..., 2].tolist() == [[2, 2, 1, 2], [2, 2, 1, 2]]
    # back to file pixels with the frame, as ops.boxes_to_original maps boxes
    x0, y0, x1, y1 = target["image_box"].tolist()
    sx, sy = (x1 - x0) / W, (y1 - y0) / H
    back = torch.stack([(kp[..., 0] - x0) / sx, (kp[..., 1] - y0) / sy], -1)
    torch.testing.assert_close(back, torch.from_numpy(corners[..., :2]), atol=tol / min(sx, sy) + 1e-4, rtol=0)


def test_flip_swaps_mirror_points_onto_the_flipped_corners() -> None:
    image, boxes, labels, corners = _box_and_corners()
    flip = AugmentConfig(hflip=1.0, affine_p=0.0, color_p=0.0)
    t = build_detection_transform(None, "none", train=True, augment=flip, keypoints=True, flip_idx=[1, 0, 3, 2])
    _, target = apply_detection_transform(t, image, boxes, labels, keypoints=corners)
    b = target["boxes"]
    np.testing.assert_allclose(b.numpy(), [[30, 5, 50, 25], [3, 12, 20, 37]], atol=1e-4)  # the flipped boxes
    kp = target["keypoints"].numpy()
    # point 0 (top-left) is the flipped box's top-left corner again: the old top-right one, swapped
    for k in range(2):
        x1, y1, x2, y2 = b[k].tolist()
        np.testing.assert_allclose(kp[k, :, :2], [[x1, y1], [x2, y1], [x2, y2], [x1, y2]], atol=1e-4)
    assert kp[:, :, 2].tolist() == [[2, 2, 2, 1]] * 2  # the hidden bottom-right became the bottom-left
    # without flip pairs the points keep their index: top-left lands on the right
    t = build_detection_transform(None, "none", train=True, augment=flip, keypoints=True)
    _, target = apply_detection_transform(t, image, boxes, labels, keypoints=corners)
    assert target["keypoints"][0, 0, 0].item() == 50


def test_points_pushed_out_of_the_image_become_unlabelled() -> None:
    image, boxes, labels, corners = _box_and_corners()
    corners[0, 3] = 0  # not labelled: stays (0, 0, 0)
    shift = AugmentConfig(hflip=0.0, scale=(2.0, 2.0), translate=0.0, affine_p=1.0, color_p=0.0)
    t = build_detection_transform(None, "none", train=True, augment=shift, keypoints=True)
    _, target = apply_detection_transform(t, image, boxes, labels, keypoints=corners)
    kp = target["keypoints"]
    assert len(target["boxes"]) == 2 and kp.shape == (2, 4, 3)
    x, y, v = kp.unbind(-1)
    inside = (x >= 0) & (x <= W) & (y >= 0) & (y <= H)
    assert inside.all() and (kp[v == 0] == 0).all()
    # zoomed 2x about the centre (30, 20): (10, 5) -> (-10, -10) and (30, 5) -> (30, -10) leave the image,
    # (30, 25) -> (30, 30) stays (hidden, v = 1); of the second box only (40, 12) -> (50, 4) stays
    assert v.tolist() == [[0, 0, 1, 0], [2, 0, 0, 0]]
    np.testing.assert_allclose(kp[0, 2, :2].numpy(), [30, 30], atol=0.5)  # albumentations' pixel-centre affine
    np.testing.assert_allclose(kp[1, 0, :2].numpy(), [50, 4], atol=0.5)


# -- synthetic corner shapes -----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["coco", "yolo"])
def test_synthetic_corner_shapes_read_back(fmt: str, tmp_path: Path) -> None:
    settings = dict(splits={"train": 4, "val": 2}, image_size=64, num_classes=3, background_fraction=0.0)
    dm = DetectionDataModule(format=fmt, root=str(tmp_path / fmt), keypoints=True, image_size=64, synthetic=settings)
    # known right after __init__, nothing written yet
    assert not (tmp_path / fmt).exists()
    assert dm.num_keypoints == 4 and dm.keypoint_names == ["top_left", "top_right", "bottom_right", "bottom_left"]
    assert dm.skeleton == [(0, 1), (1, 2), (2, 3), (3, 0)] and dm.flip_idx == [1, 0, 3, 2]
    assert dm.keypoint_sigmas == [0.05] * 4 and dm.class_names == ["square", "rectangle", "trapezoid"]
    dm.prepare_data()
    # the files declare the same (read by the real reader, without the synthetic settings)
    root = tmp_path / fmt
    plain = DetectionDataModule(format=fmt, root=str(root), keypoints=True, image_size=64)
    assert (plain.num_keypoints, plain.keypoint_names, plain.skeleton, plain.flip_idx, plain.keypoint_sigmas) == (
        dm.num_keypoints, dm.keypoint_names, dm.skeleton, dm.flip_idx, dm.keypoint_sigmas)
    split = plain.reader.samples("train", "t", plain.class_names)
    for rec in split.records:
        assert rec.keypoints.shape == (len(rec.boxes), 4, 3) and (rec.keypoints[..., 2] == 2).all()
        x, y = rec.keypoints[..., 0], rec.keypoints[..., 1]
        b = rec.boxes[:, None]
        assert ((x >= b[..., 0] - 0.01) & (x <= b[..., 2] + 0.01) & (y >= b[..., 1] - 0.01) & (y <= b[..., 3] + 0.01)).all()
    triangles = DetectionDataModule(format=fmt, root=str(tmp_path / "tri"), keypoints=True,
                                    synthetic={"num_keypoints": 3, "num_classes": 2})
    assert triangles.keypoint_names == ["top", "bottom_right", "bottom_left"] and triangles.flip_idx == [0, 2, 1]
    assert triangles.class_names == ["triangle", "right_triangle"]


def test_flipped_squares_keep_corner_names_by_place(tmp_path: Path) -> None:
    """Squares turned by up to 30 degrees: top-left is up and left of the centre; after a flip (the
    image flipped, the points swapped by flip_idx) that still holds, and the points are the mirror
    images of the unflipped ones."""
    settings = dict(splits={"train": 6}, image_size=96, num_classes=1, background_fraction=0.0, max_objects=2)
    root = write_synthetic_detection(tmp_path / "sq", "coco", keypoints=True, **settings)
    split = DetectionDataModule(format="coco", root=str(root), keypoints=True, val=None).reader.samples("train", "t", ["square"])
    flip = AugmentConfig(hflip=1.0, affine_p=0.0, color_p=0.0)
    t = build_detection_transform(None, "none", train=True, augment=flip, keypoints=True, flip_idx=[1, 0, 3, 2])
    plain = build_detection_transform(None, "none", keypoints=True)
    count = 0
    for rec in split.records:
        image = np.asarray(Image.open(rec.path).convert("RGB"))
        flipped_image, target = apply_detection_transform(t, image, rec.boxes, rec.labels, keypoints=rec.keypoints)
        _, same = apply_detection_transform(plain, image, rec.boxes, rec.labels, keypoints=rec.keypoints)
        for before, after in zip(same["keypoints"].numpy(), target["keypoints"].numpy()):
            for kp in (before, after):
                c = kp[:, :2].mean(axis=0)
                left, up = kp[:, 0] < c[0], kp[:, 1] < c[1]
                assert left.tolist() == [True, False, False, True] and up.tolist() == [True, True, False, False]
            mirrored = np.stack([96 - before[:, 0], before[:, 1]], -1)[[1, 0, 3, 2]]
            np.testing.assert_allclose(after[:, :2], mirrored, atol=1e-3)
            # the flipped image has the shape's colour just inside each corner
            img = flipped_image.permute(1, 2, 0).numpy()
            c = after[:, :2].mean(axis=0)
            inner = after[:, :2] + (c - after[:, :2]) * 0.15
            colours = img[inner[:, 1].astype(int), inner[:, 0].astype(int)]
            assert np.abs(colours - img[int(c[1]), int(c[0])]).max() < 1.0  # normalised units: same object
            count += 1
    assert count >= 6


# -- the datamodule --------------------------------------------------------------------------------------
def test_batch_carries_keypoints(tmp_path: Path) -> None:
    dm = DetectionDataModule(format="yolo", root=str(tmp_path / "s"), keypoints=True, image_size=48, batch_size=3,
                             synthetic=dict(splits={"train": 3, "val": 2}, image_size=64, num_classes=2))
    dm.prepare_data()
    dm.setup("fit")
    for stage in ("train", "val"):
        images, targets = next(iter(dm.loader(stage)))
        for im, t in zip(images, targets):
            kp = t["keypoints"]
            assert kp.dtype == torch.float32 and kp.shape == (len(t["boxes"]), 4, 3) and len(t["boxes"])
            x, y, v = kp.unbind(-1)
            assert ((x >= 0) & (x <= im.shape[-1]) & (y >= 0) & (y <= im.shape[-2])).all()
            assert set(v.unique().tolist()) <= {0.0, 2.0} and (kp[v == 0] == 0).all()
    off = DetectionDataModule(format="yolo", root=str(tmp_path / "s"), image_size=48)
    assert off.num_keypoints == 0 and off.keypoint_names == [] and off.flip_idx is None and off.keypoint_sigmas == []
    off.setup("validate")
    assert "keypoints" not in off.datasets["val"][0][1]


def test_a_flip_without_flip_pairs_is_refused_for_points_with_sides(tmp_path: Path) -> None:
    line = "0 0.5 0.5 0.4 0.5 0.5 0.25 2 0.25 0.5 1 0 0 0"
    root = _yolo(tmp_path, [line], flip_idx=None, skeleton=[[0, 1], [0, 2]])
    dm = DetectionDataModule(format="yolo", root=str(root), keypoints=True, image_size=48)
    assert dm.flip_idx is None and dm.skeleton == [(0, 1), (0, 2)]
    with pytest.raises(InvalidInputError) as err:
        dm.setup("fit")
    text = str(err.value)
    assert text.startswith(str(root / "data.yaml")) and "\n" not in text
    assert "no flip_idx" in text and "add flip_idx" in text and "hflip: 0" in text
    DetectionDataModule(format="yolo", root=str(root), keypoints=True, image_size=48, hflip=0.0).setup("fit")
    DetectionDataModule(format="yolo", root=str(root), keypoints=True, image_size=48, augment=False).setup("fit")
    # points without sides (no skeleton, plain names) flip in place
    plain = _yolo(tmp_path / "plain", [line], flip_idx=None)
    DetectionDataModule(format="yolo", root=str(plain), keypoints=True, image_size=48).setup("fit")


# -- visiontasks check -----------------------------------------------------------------------------------
def _check(config: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"data": {"class_path": "visiontasks.data.DetectionDataModule", "init_args": config}}))
    code = main(["check", "--config", str(path), "--output", str(tmp_path / "out"), "--no-progress", "--workers", "1"])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text
    return code, text


def test_check_reports_every_bad_pose_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = "0 0.5 0.5 0.4 0.5 0.5 0.25 2 0.25 0.5 1 0 0 0"
    root = _yolo(tmp_path / "y", [good, "0 0.5 0.5 0.4 0.5 0.5 0.25 2", "0 0.5 0.5 0.4 0.5 0.5 0.25 7 0.25 0.5 1 0 0 0",
                                  "0 0.5 0.5 0.4 0.5 0.5 1.5 2 0.25 0.5 1 0 0 0"])
    code, text = _check({"format": "yolo", "root": str(root), "keypoints": True}, tmp_path, capsys)
    label = root / "labels/train/a.txt"
    assert code == 2
    lines = [line for line in text.splitlines() if line.startswith("error:") and str(label) in line]
    assert any("line 2: kpt_shape [3, 3]" in line for line in lines), text
    assert any("line 3: keypoint 0 has visibility 7" in line for line in lines), text
    assert any("line 4: keypoint 0 at (0.5, 1.5) lies outside" in line for line in lines), text


def test_check_reports_every_bad_coco_keypoint_annotation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "c"
    path = _coco(root, [{"keypoints": [1, 2, 2] * 3}, {"keypoints": [1, 2, 2]}, {"keypoints": [1, 2, 9] * 3}])
    (root / "annotations").mkdir()
    path.rename(root / "annotations/instances_train.json")
    (root / "images").rename(root / "images_tmp")
    (root / "images").mkdir()
    (root / "images_tmp").rename(root / "images/train")
    code, text = _check({"format": "coco", "root": str(root), "keypoints": True, "val": "train"}, tmp_path, capsys)
    assert code == 2
    assert "annotation 2 has 3 keypoint values" in text and "annotation 3: keypoint 0 has visibility 9" in text
    assert "annotation 1" not in text


def test_check_reports_the_flip_refusal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _yolo(tmp_path / "y", ["0 0.5 0.5 0.4 0.5 0.5 0.25 2 0.25 0.5 1 0 0 0"], flip_idx=None, skeleton=[[0, 1]])
    code, text = _check({"format": "yolo", "root": str(root), "keypoints": True}, tmp_path, capsys)
    assert code == 2
    line = [ln for ln in text.splitlines() if ln.startswith("error:") and "no flip_idx" in ln]
    assert len(line) == 1 and str(root / "data.yaml") in line[0], text
    code, text = _check({"format": "yolo", "root": str(root), "keypoints": True, "hflip": 0.0}, tmp_path, capsys)
    assert code == 0, text
