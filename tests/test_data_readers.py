"""Readers as objects: the registries, every registered reader on tiny data, class tables known right
after ``__init__``, ``num_classes`` linked through the CLI, the image-file lister, the synthetic stamp."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import visiontasks  # noqa: F401  (quiet albumentations)
from visiontasks.data import ClassificationDataModule, DetectionDataModule, SegmentationDataModule
from visiontasks.data.classification import CLASSIFICATION_SOURCES, write_synthetic_image_folder
from visiontasks.data.detection import DETECTION_READERS, write_synthetic_detection
from visiontasks.data.io import list_image_files
from visiontasks.errors import InvalidInputError
from visiontasks.data.registry import Registry
from visiontasks.data.segmentation import (
    SEGMENTATION_READERS,
    ReaderOptions,
    save_index_mask,
    write_synthetic_segmentation,
)
from visiontasks.data.synthetic import STAMP, build_synthetic, read_stamp

REPO = Path(__file__).resolve().parents[1]


# -- registries -------------------------------------------------------------------------------------
def test_registry_unknown_name_lists_the_available_ones() -> None:
    reg: Registry[object] = Registry("thing")

    @reg.register("b")
    class B:
        pass

    @reg.register("a")
    class A:
        pass

    assert reg.get("a") is A and A.name == "a" and reg.names() == ["a", "b"]
    with pytest.raises(ValueError, match=r"unknown thing 'c'; available: a, b"):
        reg.get("c")
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(B)


@pytest.mark.parametrize("make, available", [
    (lambda: DetectionDataModule(format="pascal"), "coco, voc, yolo"),
    (lambda: SegmentationDataModule(format="pascal"), "dataset_yaml, folder, synthetic, voc"),
    (lambda: ClassificationDataModule(source="pascal"), "cifar10, digits, fashionmnist, imagefolder, mnist, synthetic"),
])  # fmt: skip
def test_datamodules_name_the_available_formats(make, available: str) -> None:
    with pytest.raises(ValueError, match=f"'pascal'; available: {available}$"):
        make()


# -- every registered detection reader ----------------------------------------------------------------
@pytest.mark.parametrize("fmt", DETECTION_READERS.names())
def test_each_detection_reader_returns_samples(fmt: str, tmp_path: Path) -> None:
    root = write_synthetic_detection(tmp_path / fmt, fmt, splits={"train": 3, "val": 2}, image_size=40,
                                     num_classes=2, background_fraction=0.0)
    reader_class = DETECTION_READERS.get(fmt)
    reader = reader_class(root, {"train": "train", "val": "val"})
    names, ids = reader.class_table()
    assert names == ["circle", "square"] or fmt == "voc"  # VOC's table is the config's (default: VOC's 20)
    assert len(ids) == len(names)
    split = reader.samples("train", "t", ["circle", "square"])
    assert len(split.records) == 3 and all(r.path.is_file() for r in split.records)
    assert split.class_names == ["circle", "square"] and split.num_boxes > 0
    assert ids == reader_class.written_category_ids(len(names)) or fmt == "voc"


@pytest.mark.parametrize("fmt", DETECTION_READERS.names())
def test_each_detection_reader_reads_keypoints_or_refuses_them(fmt: str, tmp_path: Path) -> None:
    reader_class = DETECTION_READERS.get(fmt)
    if not reader_class.has_keypoints:
        with pytest.raises(ValueError, match=f"format '{fmt}' has no keypoints"):
            reader_class(tmp_path, {"train": "train"}, keypoints=True)
        return
    root = write_synthetic_detection(tmp_path / fmt, fmt, splits={"train": 2}, image_size=40, num_classes=2,
                                     background_fraction=0.0, keypoints=True, num_keypoints=3)
    reader = reader_class(root, {"train": "train"}, keypoints=True)
    spec = reader.keypoint_spec()
    assert spec.names == ["top", "bottom_right", "bottom_left"] and spec.flip_idx == [0, 2, 1]
    assert spec.skeleton == [(0, 1), (1, 2), (2, 0)] and spec.sigmas == [0.05] * 3
    split = reader.samples("train", "t", ["triangle", "right_triangle"])
    assert all(r.keypoints.shape == (len(r.boxes), 3, 3) for r in split.records) and split.num_boxes > 0
    assert reader_class(root, {"train": "train"}).samples("train", "t", ["triangle", "right_triangle"]).records[0].keypoints is None


# -- every registered segmentation reader -------------------------------------------------------------
def _folder(root: Path) -> Path:
    return write_synthetic_segmentation(root, counts=(2, 1, 1), image_size=24, num_shapes=2)


def _voc(root: Path) -> Path:
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True)
    for i in ("a", "b"):
        Image.fromarray(np.full((12, 10, 3), 90, np.uint8)).save(root / "JPEGImages" / f"{i}.jpg")
        save_index_mask(root / "SegmentationClass" / f"{i}.png", np.eye(12, 10, dtype=np.uint8) * 15)
    (root / "ImageSets/Segmentation/train.txt").write_text("a\nb\n")
    return root


def _dataset_yaml(root: Path) -> Path:
    _folder(root / "data")
    cfg = {"train": {"images": "data/images/train", "masks": "data/masks/train"},
           "classes": {0: "background", 5: "circle", 9: "square"}}
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    return root


SEGMENTATION_LAYOUTS = {"folder": _folder, "synthetic": lambda root: root, "voc": _voc, "dataset_yaml": _dataset_yaml}


def test_every_segmentation_reader_has_a_layout_here() -> None:
    assert sorted(SEGMENTATION_LAYOUTS) == SEGMENTATION_READERS.names()  # a new reader: add its layout


@pytest.mark.parametrize("fmt", SEGMENTATION_READERS.names())
def test_each_segmentation_reader_returns_samples(fmt: str, tmp_path: Path) -> None:
    root = SEGMENTATION_LAYOUTS[fmt](tmp_path / fmt)
    options = ReaderOptions(synthetic={"counts": (2, 1, 1), "image_size": 24, "num_shapes": 2})
    reader = SEGMENTATION_READERS.get(fmt)(root, options)
    names, _ = reader.class_table([])
    assert names is None if fmt == "folder" else len(names) >= 3
    reader.prepare()
    samples = reader.samples("train")
    assert len(samples) == 2 and all(s.image.is_file() and s.mask.is_file() for s in samples)
    assert reader.samples("no_such_split") is None and reader.layout_hint()


# -- every missing file in one error (not one per run) ---------------------------------------------------
def _remove_three(folder: Path, pattern: str = "*") -> list[Path]:
    gone = sorted(folder.glob(pattern))[1:4]
    for path in gone:
        path.unlink()
    return gone


def _assert_names_all(err: pytest.ExceptionInfo[BaseException], where: Path, gone: list[Path], total: int) -> None:
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"{where}")
    assert f"3 of {total} " in text and "do not exist" in text
    for path in gone:
        assert str(path) in text, (path, text)


def test_segmentation_voc_names_every_missing_image(tmp_path: Path) -> None:
    from visiontasks.errors import MissingFileError

    root = _voc(tmp_path / "voc")
    for i in ("c", "d", "e"):
        save_index_mask(root / "SegmentationClass" / f"{i}.png", np.zeros((12, 10), np.uint8))
    (root / "ImageSets/Segmentation/train.txt").write_text("a\nc\n\nd\nb\ne\n")  # a blank line 3
    reader = SEGMENTATION_READERS.get("voc")(root)
    with pytest.raises(MissingFileError) as err:
        reader.samples("train")
    gone = [root / "JPEGImages" / f"{i}.jpg" for i in ("c", "d", "e")]
    _assert_names_all(err, root / "ImageSets/Segmentation/train.txt", gone, 5)
    assert f"line 2: {gone[0]}" in str(err.value) and f"line 4: {gone[1]}" in str(err.value)
    assert f"line 6: {gone[2]}" in str(err.value)


@pytest.mark.parametrize("fmt", ["yolo", "coco", "voc"])
def test_detection_readers_name_every_missing_image(fmt: str, tmp_path: Path) -> None:
    from visiontasks.errors import UserInputError

    root = write_synthetic_detection(tmp_path / fmt, fmt, splits={"train": 6}, image_size=32, num_classes=2,
                                     max_objects=1, background_fraction=0.0, seed=0)
    images = root / ("JPEGImages" if fmt == "voc" else "images/train")
    if fmt == "yolo":  # a .txt list of the images, so that the missing ones are named by a line
        lines = [f"images/train/{p.name}" for p in sorted(images.glob("*.png"))]
        (root / "train.txt").write_text("\n".join(lines) + "\n")
        cfg = yaml.safe_load((root / "data.yaml").read_text())
        (root / "data.yaml").write_text(yaml.safe_dump({**cfg, "train": "train.txt"}))
    gone = _remove_three(images, "*.png")
    where = {"yolo": root / "train.txt", "coco": root / "annotations/instances_train.json",
             "voc": root / "ImageSets/Main/train.txt"}[fmt]
    reader = DETECTION_READERS.get(fmt)(root, {"train": "train"})
    with pytest.raises(UserInputError) as err:
        reader.samples("train", "t", ["circle", "square"])
    text = str(err.value)
    if fmt == "yolo":
        text = text.split(": ", 1)[1]  # after "data.yaml (train): "
    assert text.startswith(str(where)), text
    assert "3 of 6 images do not exist" in text and "\n" not in text
    for path in gone:
        assert str(path) in text, (path, text)
    if fmt == "yolo":
        assert f"line 2: {gone[0]}" in text


def test_detection_voc_names_every_missing_annotation_file(tmp_path: Path) -> None:
    from visiontasks.data.detection import DatasetFormatError

    root = write_synthetic_detection(tmp_path / "voc", "voc", splits={"train": 6}, image_size=32, num_classes=2,
                                     max_objects=1, background_fraction=0.0, seed=0)
    gone = _remove_three(root / "Annotations", "*.xml")
    with pytest.raises(DatasetFormatError) as err:
        DETECTION_READERS.get("voc")(root, {"train": "train"}).samples("train", "t", ["circle", "square"])
    assert str(err.value).startswith(f"{root / 'ImageSets/Main/train.txt'}: 3 of 6 annotation files do not exist")
    for n, path in enumerate(gone, 2):
        assert f"line {n}: id {path.stem!r} has no annotation file {path}" in str(err.value)


def test_missing_files_beyond_ten_are_counted() -> None:
    from visiontasks.data.missing import describe_missing

    text = describe_missing([f"line {n}: {n}.jpg" for n in range(1, 14)], 20, "images")
    assert text.startswith("13 of 20 images do not exist: line 1: 1.jpg;") and "line 10: 10.jpg; and 3 more" in text
    assert "11.jpg" not in text
    assert describe_missing(["line 4: a.jpg"], 9, "images") == "line 4: a.jpg, which does not exist"


# -- class tables right after __init__, without reading the data ------------------------------------
def test_num_classes_and_class_names_right_after_init(tmp_path: Path) -> None:
    """Cheap: nothing is generated or scanned to know the classes."""
    det = DetectionDataModule(format="coco", root=str(tmp_path / "det"), synthetic={"num_classes": 2})
    assert det.num_classes == 2 and det.class_names == ["circle", "square"] and det.category_ids == [1, 2]
    assert DetectionDataModule(format="voc", root=str(tmp_path / "none")).num_classes == 20
    seg = SegmentationDataModule(str(tmp_path / "seg"), "synthetic", synthetic={"num_shapes": 3})
    assert seg.num_classes == 4 and seg.class_names[0] == "background"
    cls = ClassificationDataModule("synthetic", root=str(tmp_path / "cls"), synthetic_classes=3)
    assert cls.num_classes == 3 and cls.class_names == ["circle", "square", "triangle"]
    assert ClassificationDataModule("mnist", root=str(tmp_path / "mnist")).num_classes == 10
    assert ClassificationDataModule("cifar10", root=str(tmp_path / "c10")).class_names[0] == "airplane"
    assert not any((tmp_path / d).exists() for d in ("det", "seg", "cls", "mnist", "c10"))


def test_segmentation_synthetic_settings_are_checked_by_name(tmp_path: Path) -> None:
    """``synthetic:`` holds the writer's settings (as detection's): a misspelt one is one line with the
    option, the closest name and the accepted ones, not the writer's TypeError at setup."""
    with pytest.raises(InvalidInputError, match=r"data.init_args.synthetic: unknown setting 'num_shape'; "
                                                r"did you mean 'num_shapes'\?; accepted: counts, image_size"):
        SegmentationDataModule(str(tmp_path / "seg"), "synthetic", synthetic={"num_shape": 3})
    # the class tables that are read come from the class table alone
    yolo = write_synthetic_detection(tmp_path / "yolo", "yolo", splits={"train": 1}, image_size=32, num_classes=3)
    assert DetectionDataModule(format="yolo", root=str(yolo)).class_names == ["circle", "square", "triangle"]
    coco = write_synthetic_detection(tmp_path / "coco", "coco", splits={"train": 1}, image_size=32, num_classes=2)
    dm = DetectionDataModule(format="coco", root=str(coco), val=None)
    assert dm.num_classes == 2 and dm.category_ids == [1, 2]


def test_synthetic_classification_names_match_the_folders_read(tmp_path: Path) -> None:
    dm = ClassificationDataModule("synthetic", root=str(tmp_path), synthetic_classes=4, synthetic_per_class=8,
                                  image_size=16, val_fraction=0.25, test_fraction=0.25)
    names = list(dm.class_names)
    dm.setup()
    assert sorted(p.name for p in (tmp_path / "train").iterdir() if p.is_dir()) == names
    labels = {dm._splits["train"][0].labels[i] for i in range(len(dm._splits["train"][0]))}
    assert labels == set(range(4))


def test_classification_sources_registered() -> None:
    assert CLASSIFICATION_SOURCES.names() == ["cifar10", "digits", "fashionmnist", "imagefolder", "mnist", "synthetic"]


# -- segmentation items carry the file's size ----------------------------------------------------------
def test_segmentation_items_and_batches_carry_orig_size(tmp_path: Path) -> None:
    dm = SegmentationDataModule(str(tmp_path / "s"), "synthetic", synthetic={"counts": (3, 2, 2), "image_size": 30,
                                "num_shapes": 2}, crop_size=16, batch_size=2)
    dm.setup("fit")
    item = dm.datasets["train"][0]
    assert item["size"] == (16, 16) and item["orig_size"] == (30, 30)
    batch = next(iter(dm.val_dataloader()))
    assert batch["orig_size"] == [(30, 30), (30, 30)] and batch["size"] == [(30, 30), (30, 30)]


# -- one image-file lister ------------------------------------------------------------------------------
def test_list_image_files_skips_folders_named_like_images(tmp_path: Path) -> None:
    (tmp_path / "fake.png").mkdir()
    (tmp_path / "sub" / "deep.JPG").parent.mkdir()
    for name in ("b.jpg", "a.PNG", "notes.txt", "sub/deep.JPG"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_image_files(tmp_path)] == ["a.PNG", "b.jpg"]
    assert [p.relative_to(tmp_path).as_posix() for p in list_image_files(tmp_path, recursive=True)] == [
        "a.PNG", "b.jpg", "sub/deep.JPG"]
    assert list_image_files(tmp_path / "missing") == []


# -- one synthetic stamp convention ----------------------------------------------------------------------
def test_synthetic_stamp_records_settings_and_rebuilds_on_change(tmp_path: Path) -> None:
    calls = []

    def write(folder: Path) -> None:
        calls.append(folder)
        (folder / "x.txt").write_text(str(len(calls)))

    root = build_synthetic(tmp_path / "set", {"n": 1, "size": (2, 3)}, write)
    assert read_stamp(root) == {"n": 1, "size": [2, 3]} and (root / "x.txt").read_text() == "1"
    build_synthetic(tmp_path / "set", {"n": 1, "size": (2, 3)}, write)
    assert len(calls) == 1  # same settings: reused
    build_synthetic(tmp_path / "set", {"n": 2, "size": (2, 3)}, write)
    assert (root / "x.txt").read_text() == "2" and read_stamp(root)["n"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name != "set"]  # no temporary folders left
    assert not [p for p in root.iterdir() if p.name.startswith(f".{STAMP}")]  # no temporary stamp left


def test_classification_synthetic_set_uses_the_stamp(tmp_path: Path) -> None:
    root = write_synthetic_image_folder(tmp_path / "train", 2, 3, 16, 0)
    assert json.loads((root / STAMP).read_text())["per_class"] == 3
    write_synthetic_image_folder(tmp_path / "train", 2, 5, 16, 0)
    assert len(list_image_files(root / "circle")) == 5  # settings changed: rebuilt


# -- num_classes is stated once: linked from the data through the CLI ----------------------------------
def _no_model_num_classes(config: Path) -> bool:
    return "num_classes" not in yaml.safe_load(config.read_text())["model"]["init_args"]


@pytest.mark.parametrize("config, data_args, expected", [
    ("segmentation/fcn32s_resnet18_shapes.yaml", ["--data.init_args.synthetic.num_shapes", "2"], 3),
    ("detection/yolov1_resnet18_shapes.yaml", ["--data.init_args.synthetic.num_classes", "2"], 2),
    ("classification/mobilenet_v2_synthetic.yaml", ["--data.init_args.synthetic_classes", "3"], 3),
])  # fmt: skip
def test_cli_links_num_classes_from_the_data(config: str, data_args: list[str], expected: int,
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from visiontasks.cli import build_cli

    monkeypatch.setattr(sys, "argv", ["visiontasks"])
    path = REPO / "configs" / config
    assert _no_model_num_classes(path)
    cli = build_cli(["--config", str(path), "--data.init_args.root", str(tmp_path / "d"), *data_args], run=False)
    assert cli.datamodule.num_classes == expected and cli.model.num_classes == expected


def test_cli_fits_a_config_without_model_num_classes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """3 synthetic classes while the task's default is 10: without the link BaseTask's count check
    would stop the fit."""
    from visiontasks.cli import main

    monkeypatch.setattr(sys, "argv", ["visiontasks"])
    config = REPO / "configs" / "classification" / "mobilenet_v2_synthetic.yaml"
    assert _no_model_num_classes(config)
    args = ["fit", "--config", str(config), "--trainer.fast_dev_run", "1", "--trainer.default_root_dir", str(tmp_path),
            "--trainer.enable_progress_bar", "false", "--data.init_args.root", str(tmp_path / "d"),
            "--data.init_args.synthetic_classes", "3", "--data.init_args.synthetic_per_class", "12",
            "--data.init_args.image_size", "32", "--data.init_args.batch_size", "4"]
    assert main(args) == 0
    assert (tmp_path / "d" / "train" / STAMP).is_file()  # the data was written and read
