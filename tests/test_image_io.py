"""Reading images as they come from the wild: 16-bit files and EXIF orientation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visiontasks.data.detection.common import image_size_of
from visiontasks.data.io import read_image


def test_16bit_grey_png_is_scaled_by_the_type_range_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32896], [65000, 65278, 65535]], np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")  # really stored as 16 bits
    grey = read_image(path, channels=1)[..., 0]
    np.testing.assert_array_equal(grey, np.rint(values / 257.0).astype(np.uint8))
    assert grey[1].tolist() == [253, 254, 255]  # near-white stays graded (was 255, 255, 255)
    rgb = read_image(path, channels=3)
    assert rgb.shape == (2, 3, 3) and (rgb[..., 0] == grey).all()


def test_16bit_tiff(tmp_path: Path) -> None:
    values = np.linspace(60000, 65535, 12, dtype=np.uint16).reshape(3, 4)
    path = tmp_path / "deep.tif"
    Image.fromarray(values).save(path)
    out = read_image(path, channels=1)[..., 0]
    np.testing.assert_array_equal(out, np.rint(values / 257.0).astype(np.uint8))
    assert len(np.unique(out)) > 1


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int) -> None:
    stored = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high as stored in the file
    stored[:5, :10] = 255  # a white patch in the stored top-left corner
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    img.save(path, exif=exif, quality=100)
    out = read_image(path)
    turned = orientation in (6, 8)
    assert out.shape[:2] == ((40, 20) if turned else (20, 40))
    h, w = out.shape[:2]
    assert image_size_of(path) == (h, w)  # header size agrees with the decoded, turned image
    # where the stored top-left patch ends up: 1 none, 3 rotate 180, 6 rotate 90 cw, 8 rotate 90 ccw
    corner = {1: (0, 0), 3: (h - 1, w - 1), 6: (0, w - 1), 8: (h - 1, 0)}[orientation]
    assert out[corner].mean() > 200


@pytest.mark.parametrize(
    ("line", "expected"),
    [("0 nan 0.5 0.2 0.2", "NaN or infinite coordinate"), ("0 0.5 -0.1 0.2 0.2", "negative coordinate -0.1"),
     ("0 0.5 0.5 1.5 0.2", "coordinate 1.5 > 1"), ("0 0.1 0.1 0.5 0.2 640 0.9", "coordinate 640 > 1")],
    ids=["nan", "negative", "above-one", "polygon-in-pixels"],
)
def test_yolo_coordinates_outside_unit_range_are_named(tmp_path: Path, line: str, expected: str) -> None:
    from visiontasks.data.detection import read_yolo
    from visiontasks.data.detection.common import DatasetFormatError

    (tmp_path / "images/train").mkdir(parents=True)
    (tmp_path / "labels/train").mkdir(parents=True)
    Image.new("RGB", (20, 10)).save(tmp_path / "images/train/a.png")
    (tmp_path / "labels/train/a.txt").write_text("0 0.5 0.5 0.2 0.2\n" + line + "\n")
    (tmp_path / "data.yaml").write_text(f"path: {tmp_path}\ntrain: images/train\nnames: [thing]\n")
    with pytest.raises(DatasetFormatError, match=rf"a\.txt, line 2: {expected}"):
        read_yolo(tmp_path / "data.yaml", "train")


def test_yolo_bad_lines_can_be_skipped_with_a_count(tmp_path: Path) -> None:
    import warnings

    from visiontasks.data.detection import read_yolo
    from visiontasks.data.detection.common import DatasetFormatError

    (tmp_path / "images/train").mkdir(parents=True)
    (tmp_path / "labels/train").mkdir(parents=True)
    Image.new("RGB", (20, 10)).save(tmp_path / "images/train/a.png")
    (tmp_path / "labels/train/a.txt").write_text(
        "0 0.5 0.5 0.2 0.2\n0 nan 0.5 0.2 0.2\nnan 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.2 0.2\n0 0.5 0.5 1.5 0.2\n0 0.5\n"
    )
    (tmp_path / "data.yaml").write_text(f"path: {tmp_path}\ntrain: images/train\nnames: [thing]\n")
    with pytest.raises(DatasetFormatError, match=r"a\.txt, line 2: NaN .*skip_bad_labels: true"):
        read_yolo(tmp_path / "data.yaml", "train")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        split = read_yolo(tmp_path / "data.yaml", "train", skip_bad_labels=True)
    assert split.records[0].labels.tolist() == [0]  # the one good line
    (message,) = [str(w.message) for w in caught if "bad label line" in str(w.message)]
    assert "skipped 5 bad label line(s)" in message and "a.txt, line 2: NaN or infinite coordinate" in message
    assert split.notes == [message]


# -- EXIF orientation and the annotations made on the turned image ------------------------------------
UPRIGHT_BOX = (4, 5, 12, 15)  # x1, y1, x2, y2 (pixel edges) of the white patch in the upright picture


def _phone_picture(path: Path) -> np.ndarray:
    """A JPEG stored 40 wide x 20 high with EXIF orientation 6 (turn 90 degrees clockwise to view), as
    phones write portrait pictures; upright it is 20 wide x 40 high with a white patch at UPRIGHT_BOX.
    Returns the upright picture."""
    upright = np.zeros((40, 20, 3), np.uint8)
    x1, y1, x2, y2 = UPRIGHT_BOX
    upright[y1:y2, x1:x2] = 255
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(upright, k=1)))  # turned back counter-clockwise
    exif = stored.getexif()
    exif[0x0112] = 6
    path.parent.mkdir(parents=True, exist_ok=True)
    stored.save(path, exif=exif, quality=100)
    return upright


def _patch_under(image: np.ndarray, box: np.ndarray) -> float:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return float(image[y1:y2, x1:x2].mean())


def test_exif_turned_picture_agrees_with_boxes_drawn_upright_yolo(tmp_path: Path) -> None:
    from visiontasks.data.detection import read_yolo

    upright = _phone_picture(tmp_path / "images/train/p.jpg")
    x1, y1, x2, y2 = UPRIGHT_BOX
    (tmp_path / "labels/train").mkdir(parents=True)
    (tmp_path / "labels/train/p.txt").write_text(f"0 {(x1 + x2) / 40} {(y1 + y2) / 80} {(x2 - x1) / 20} {(y2 - y1) / 40}\n")
    (tmp_path / "data.yaml").write_text(f"path: {tmp_path}\ntrain: images/train\nnames: [patch]\n")
    (rec,) = read_yolo(tmp_path / "data.yaml", "train").records
    image = read_image(rec.path)
    assert rec.size == image.shape[:2] == upright.shape[:2] == (40, 20)
    np.testing.assert_allclose(rec.boxes[0], UPRIGHT_BOX, atol=1e-4)
    assert _patch_under(image, rec.boxes[0]) > 240  # the box sits on the white patch


def _coco(root: Path, width: int, height: int) -> Path:
    import json

    x1, y1, x2, y2 = UPRIGHT_BOX
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    path = root / "annotations/instances_train.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "p.jpg", "width": width, "height": height}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0}],
        "categories": [{"id": 1, "name": "patch"}],
    }))
    return path


def test_exif_coco_size_of_the_turned_picture_is_accepted(tmp_path: Path) -> None:
    from visiontasks.data.detection import read_coco

    _phone_picture(tmp_path / "images/train/p.jpg")
    (rec,) = read_coco(_coco(tmp_path, 20, 40), "images/train", tmp_path).records
    assert rec.size == (40, 20)
    assert _patch_under(read_image(rec.path), rec.boxes[0]) > 240


def test_exif_coco_size_of_the_unturned_file_is_named(tmp_path: Path) -> None:
    from visiontasks.data.detection import read_coco
    from visiontasks.data.detection.common import DatasetFormatError

    _phone_picture(tmp_path / "images/train/p.jpg")
    with pytest.raises(DatasetFormatError, match=r"instances_train\.json \(image id 1\): records p\.jpg as 40x20 "
                                                 r"\(WxH\), its size as stored, but the file's EXIF orientation 6 "
                                                 r"turns it to 20x40"):
        read_coco(_coco(tmp_path, 40, 20), "images/train", tmp_path)


@pytest.mark.parametrize(("width", "height", "ok"), [(20, 40, True), (40, 20, False)])
def test_exif_voc_size(tmp_path: Path, width: int, height: int, ok: bool) -> None:
    from visiontasks.data.detection import read_voc
    from visiontasks.data.detection.common import DatasetFormatError

    _phone_picture(tmp_path / "JPEGImages/p.jpg")
    x1, y1, x2, y2 = UPRIGHT_BOX
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations/p.xml").write_text(
        f"<annotation><filename>p.jpg</filename><size><width>{width}</width><height>{height}</height></size>"
        f"<object><name>patch</name><bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin><xmax>{x2}</xmax>"
        f"<ymax>{y2}</ymax></bndbox></object></annotation>"
    )
    (tmp_path / "ImageSets/Main").mkdir(parents=True)
    (tmp_path / "ImageSets/Main/train.txt").write_text("p\n")
    if not ok:
        with pytest.raises(DatasetFormatError, match=r"p\.xml: records p\.jpg as 40x20 .*EXIF orientation 6"):
            read_voc(tmp_path, "train", ["patch"])
        return
    (rec,) = read_voc(tmp_path, "train", ["patch"]).records
    assert rec.size == (40, 20) and _patch_under(read_image(rec.path), rec.boxes[0]) > 240


def test_exif_segmentation_mask_drawn_upright_agrees_and_unturned_one_is_named(tmp_path: Path) -> None:
    from visiontasks.data.segmentation.dataset import SegmentationDataset
    from visiontasks.data.segmentation.masks import MaskDecoder, MaskError
    from visiontasks.data.segmentation.readers import SegmentationSample

    upright = _phone_picture(tmp_path / "p.jpg")
    mask = (upright[..., 0] > 128).astype(np.uint8)  # drawn on the upright picture: 20 wide, 40 high
    Image.fromarray(mask).save(tmp_path / "upright.png")
    Image.fromarray(np.ascontiguousarray(np.rot90(mask, k=1))).save(tmp_path / "unturned.png")
    decoder = MaskDecoder(num_classes=2)
    good = SegmentationDataset([SegmentationSample(tmp_path / "p.jpg", tmp_path / "upright.png")], decoder, None)
    image, read_mask = good.load(0)
    assert read_mask.shape == image.shape[:2] == (40, 20)
    assert image[read_mask == 1].mean() > 240 and image[read_mask == 0].mean() < 15
    bad = SegmentationDataset([SegmentationSample(tmp_path / "p.jpg", tmp_path / "unturned.png")], decoder, None,
                              resize_mismatched_masks=True)
    with pytest.raises(MaskError, match=r"unturned\.png is 40x20 .*EXIF orientation 6 turns the image to 20x40"):
        bad.load(0)
