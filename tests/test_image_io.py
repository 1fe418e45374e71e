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
