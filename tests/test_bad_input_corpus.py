"""The bad-input corpus: a person's mistakes through the real ``visiontasks`` entry point.

Each case breaks one thing in tiny, valid data or config (an image, a label line, a JSON key, an
option) and asserts the exact outcome: exit status 2, ONE ``error:`` line naming the file (and
line) or the option, and no Python traceback. ``main()`` runs in-process (the console script is
``sys.exit(main())``); a few cases run the console script itself in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import yaml
from PIL import Image

from visiontasks.cli import main
from visiontasks.data.detection import write_synthetic_detection

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "configs/classification/lenet5_digits.yaml")
FAST = ["--trainer.fast_dev_run", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false"]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``visiontasks ARGS`` in-process: (exit status, stdout + stderr). jsonargparse's own parse errors
    exit through ``SystemExit`` as the console script would."""
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            code = main(args)
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 2
    out = capsys.readouterr()
    return code, out.out + out.err


def assert_one_line_error(code: int, text: str, *expected: str) -> None:
    assert code == 2, text
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if "error:" in line]
    assert len(errors) == 1, text
    for piece in expected:
        assert piece in errors[0], f"{piece!r} not in {errors[0]!r}"


# -- tiny data sets (written once, copied per case) ------------------------------------------------
@pytest.fixture(scope="module")
def base_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("corpus")
    sets = {}
    for fmt in ("yolo", "coco", "voc"):
        sets[fmt] = write_synthetic_detection(base / fmt, fmt, splits={"train": 3, "val": 2}, image_size=48,
                                              num_classes=2, max_objects=2, background_fraction=0.0, seed=3)
    for fmt in ("yolo", "coco"):  # keypoints: the synthetic corner shapes (4 corners)
        sets[f"{fmt}_kp"] = write_synthetic_detection(base / f"{fmt}_kp", fmt, splits={"train": 3, "val": 2},
                                                      image_size=48, num_classes=2, max_objects=2,
                                                      background_fraction=0.0, seed=3, keypoints=True)
    seg = base / "seg"
    for split in ("train", "val"):
        (seg / "images" / split).mkdir(parents=True)
        (seg / "masks" / split).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(seg / "images" / split / f"{i}.png")
            mask = np.zeros((32, 32), np.uint8)
            mask[8:20, 8:20] = 1 + i % 2
            Image.fromarray(mask).save(seg / "masks" / split / f"{i}.png")
    sets["seg"] = seg
    cls = base / "cls"
    for split in ("train", "val"):
        for name in ("ant", "bee"):
            (cls / split / name).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((16, 16, 3), 60 * i, np.uint8)).save(cls / split / name / f"{i}.png")
    sets["cls"] = cls
    return sets


def detection_config(path: Path, fmt: str, root: Path, **data: object) -> Path:
    cfg = {
        "model": {"class_path": "visiontasks.tasks.DetectionTask",
                  "init_args": {"model": "yolov1", "backbone": "resnet18",
                                "model_kwargs": {"feature": "layer2", "head": "conv", "grid_size": 6,
                                                 "hidden_channels": 16}}},
        "data": {"class_path": "visiontasks.data.DetectionDataModule",
                 "init_args": {"format": fmt, "root": str(root), "image_size": 48, "batch_size": 8,
                               "augment": False, **data}},
        "trainer": {"accelerator": "cpu", "devices": 1, "default_root_dir": str(path.parent / "runs")},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def segmentation_config(path: Path, root: Path, **data: object) -> Path:
    cfg = {
        "model": {"class_path": "visiontasks.tasks.SegmentationTask",
                  "init_args": {"model": "fcn32s", "backbone": "resnet18", "fc_channels": 8}},
        "data": {"class_path": "visiontasks.data.SegmentationDataModule",
                 "init_args": {"format": "folder", "root": str(root), "class_names": ["bg", "a", "b"],
                               "crop_size": 32, "batch_size": 4, "test_split": None, **data}},
        "trainer": {"accelerator": "cpu", "devices": 1, "default_root_dir": str(path.parent / "runs")},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def classification_config(path: Path, root: Path, **data: object) -> Path:
    cfg = {
        "model": {"class_path": "visiontasks.tasks.ClassificationTask",
                  "init_args": {"backbone": "lenet5", "in_chans": 1, "head": "linear"}},
        "data": {"class_path": "visiontasks.data.ClassificationDataModule",
                 "init_args": {"source": "imagefolder", "root": str(root), "image_size": 28, "in_chans": 1,
                               "batch_size": 4, **data}},
        "trainer": {"accelerator": "cpu", "devices": 1, "default_root_dir": str(path.parent / "runs")},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


# -- mutations of the data ----------------------------------------------------------------------------
def first_label(root: Path) -> Path:
    return sorted((root / "labels" / "train").glob("*.txt"))[0]


def set_label(line: str) -> Callable[[Path], str]:
    def mutate(root: Path) -> str:
        path = first_label(root)
        path.write_text(line + "\n")
        return f"{path}, line 1"
    return mutate


def truncate_first_image(root: Path, folder: str = "images/train") -> str:
    path = sorted((root / folder).rglob("*.png"))[0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return str(path)


def not_an_image(root: Path) -> str:
    path = sorted((root / "images" / "train").glob("*.png"))[0]
    path.write_text("this is not a picture")
    return str(path)


def edit_yaml(change: Callable[[dict], None]) -> Callable[[Path], str]:
    def mutate(root: Path) -> str:
        path = root / "data.yaml"
        cfg = yaml.safe_load(path.read_text())
        change(cfg)
        path.write_text(yaml.safe_dump(cfg))
        return str(path)
    return mutate


def broken_yaml(root: Path) -> str:
    (root / "data.yaml").write_text("names: [a, b\ntrain: images/train\n")
    return str(root / "data.yaml")


def empty_train_folder(root: Path) -> str:
    for f in (root / "images" / "train").iterdir():
        f.unlink()
    return str(root / "images" / "train")


YOLO_CASES = {
    "too-few-fields": (set_label("0 0.5 0.5 0.2"), ["expected 'class cx cy w h'"]),
    "nan": (set_label("0 nan 0.5 0.2 0.2"), ["NaN or infinite coordinate"]),
    "negative": (set_label("1 0.5 -0.25 0.2 0.2"), ["negative coordinate -0.25"]),
    "above-one": (set_label("0 0.5 0.5 1.5 0.2"), ["coordinate 1.5 > 1", "skip_bad_labels"]),
    "pixels-not-fractions": (set_label("0 24 24 10 10"), ["coordinate 24 > 1"]),
    "unknown-class-id": (set_label("7 0.5 0.5 0.2 0.2"), ["class id 7 is outside the 2 classes"]),
    "non-numeric": (set_label("cat 0.5 0.5 0.2 0.2"), ["non-numeric value"]),
    "truncated-image": (truncate_first_image, ["cannot read image"]),
    "not-an-image": (not_an_image, ["cannot read image"]),
    "yaml-without-names": (edit_yaml(lambda c: c.pop("names")), ["needs 'names'"]),
    "yaml-broken": (broken_yaml, ["not valid YAML"]),
    "split-folder-missing": (edit_yaml(lambda c: c.update(train="images/nowhere")),
                             ["images/nowhere", "neither a folder nor a .txt list"]),
    "empty-image-folder": (empty_train_folder, ["no images"]),
    "names-keys-not-integers": (edit_yaml(lambda c: c.update(names={"a": "x", "b": "y"})),
                                ["'names' keys must be integer class ids"]),
}


@pytest.mark.parametrize("case", list(YOLO_CASES))
def test_bad_yolo_data(case: str, base_sets: dict[str, Path], tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    mutate, expected = YOLO_CASES[case]
    root = shutil.copytree(base_sets["yolo"], tmp_path / "yolo")
    where = mutate(root)
    cfg = detection_config(tmp_path / "c.yaml", "yolo", root)
    code, text = run_cli(["fit", "--config", str(cfg), *FAST], capsys)
    assert_one_line_error(code, text, where, *expected)


def coco_edit(change: Callable[[dict, Path], str]) -> Callable[[Path], str]:
    def mutate(root: Path) -> str:
        path = root / "annotations" / "instances_train.json"
        data = json.loads(path.read_text())
        where = change(data, root)
        path.write_text(json.dumps(data))
        return where or str(path)
    return mutate


def _coco_broken_json(root: Path) -> str:
    path = root / "annotations" / "instances_train.json"
    path.write_text(path.read_text()[:-20])
    return str(path)


def _coco_missing_image(data: dict, root: Path) -> str:
    (root / "images" / "train" / data["images"][0]["file_name"]).unlink()
    return data["images"][0]["file_name"]


COCO_CASES = {
    "broken-json": (_coco_broken_json, ["not valid JSON"]),
    "missing-categories": (coco_edit(lambda d, r: d.pop("categories") and ""), ["missing the 'categories' list"]),
    "bbox-three-numbers": (coco_edit(lambda d, r: d["annotations"][0].update(bbox=[1, 2, 3]) or ""),
                           ["annotation 1 has bbox [1, 2, 3], not [x, y, w, h]"]),
    "bbox-text": (coco_edit(lambda d, r: d["annotations"][0].update(bbox=[1, 2, "wide", 4]) or ""),
                  ["annotation 1 has bbox [1, 2, 'wide', 4]"]),
    "unknown-category": (coco_edit(lambda d, r: d["annotations"][0].update(category_id=99) or ""),
                         ["category_id 99, not among the categories [1, 2]"]),
    "missing-image-file": (coco_edit(_coco_missing_image), ["which does not exist"]),
    "annotation-of-unknown-image": (coco_edit(lambda d, r: d["annotations"][0].update(image_id=555) or ""),
                                    ["names image id 555, which is not in 'images'"]),
    "image-without-file-name": (coco_edit(lambda d, r: d["images"][0].pop("file_name") and ""),
                                ["needs 'id' and 'file_name'"]),
    "missing-annotation-file": (lambda r: (r / "annotations" / "instances_train.json").unlink() or "instances_train.json",
                                ["does not exist"]),
}


@pytest.mark.parametrize("case", list(COCO_CASES))
def test_bad_coco_data(case: str, base_sets: dict[str, Path], tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    mutate, expected = COCO_CASES[case]
    root = shutil.copytree(base_sets["coco"], tmp_path / "coco")
    where = mutate(root)
    cfg = detection_config(tmp_path / "c.yaml", "coco", root)
    code, text = run_cli(["fit", "--config", str(cfg), *FAST], capsys)
    assert_one_line_error(code, text, where, *expected)


POSE = "0 0.5 0.5 0.4 0.4 0.3 0.3 2 0.7 0.3 2 0.7 0.7 2 0.3 0.7 2"  # a square's 4 corners, normalised


def _no_flip_pairs(cfg: dict) -> None:
    cfg.pop("flip_idx")
    cfg["kpt_names"] = ["a", "b", "c", "d"]  # and no left/right names to take the pairs from; the skeleton stays


YOLO_POSE_CASES = {
    "pose-too-few-values": (set_label(POSE.rsplit(" ", 3)[0]), ["kpt_shape [4, 3] of the dataset YAML needs 5 + 4 x 3 = 17 values", "got 14"]),
    "pose-visibility-4": (set_label(POSE.replace("0.3 0.3 2", "0.3 0.3 4")), ["keypoint 0 has visibility 4"]),
    "pose-point-outside": (set_label(POSE.replace("0.7 0.7 2", "1.3 0.7 2")), ["keypoint 2 at (1.3, 0.7) lies outside the image"]),
    "pose-no-kpt-shape": (edit_yaml(lambda c: c.pop("kpt_shape")), ["keypoints: true needs kpt_shape"]),
    "pose-flip-without-pairs": (edit_yaml(_no_flip_pairs), ["no flip_idx", "add flip_idx", "hflip: 0"]),
}


@pytest.mark.parametrize("case", list(YOLO_POSE_CASES))
def test_bad_yolo_pose_data(case: str, base_sets: dict[str, Path], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    mutate, expected = YOLO_POSE_CASES[case]
    root = shutil.copytree(base_sets["yolo_kp"], tmp_path / "yolo")
    where = mutate(root)
    cfg = detection_config(tmp_path / "c.yaml", "yolo", root, keypoints=True, augment=True)
    code, text = run_cli(["fit", "--config", str(cfg), *FAST], capsys)
    assert_one_line_error(code, text, where, *expected)


def _set_points(index: int, value: list[float]) -> Callable[[dict, Path], str]:
    def change(data: dict, root: Path) -> str:
        points = data["annotations"][0]["keypoints"]
        points[3 * index: 3 * index + 3] = value
        data["annotations"][0].pop("num_keypoints")
        return ""
    return change


COCO_KEYPOINT_CASES = {
    "keypoints-one-triple": (coco_edit(lambda d, r: d["annotations"][0].update(keypoints=[1, 2, 2]) or ""),
                             ["annotation 1 has 3 keypoint values", "3 x 4 = 12"]),
    "keypoints-visibility-5": (coco_edit(_set_points(1, [5, 5, 5])), ["annotation 1: keypoint 1 has visibility 5"]),
    "keypoints-outside": (coco_edit(_set_points(0, [500, 5, 2])), ["annotation 1: keypoint 0 at (500, 5) lies outside the 48x48 image"]),
    "keypoint-counts-differ": (coco_edit(lambda d, r: d["categories"][1].update(keypoints=["a", "b"]) or ""),
                               ["categories 1 and 2 declare different keypoints (4 vs 2 points)"]),
}


@pytest.mark.parametrize("case", list(COCO_KEYPOINT_CASES))
def test_bad_coco_keypoint_data(case: str, base_sets: dict[str, Path], tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    mutate, expected = COCO_KEYPOINT_CASES[case]
    root = shutil.copytree(base_sets["coco_kp"], tmp_path / "coco")
    where = mutate(root)
    cfg = detection_config(tmp_path / "c.yaml", "coco", root, keypoints=True)
    code, text = run_cli(["fit", "--config", str(cfg), *FAST], capsys)
    assert_one_line_error(code, text, where, *expected)


def voc_edit(old: str, new: str) -> Callable[[Path], str]:
    def mutate(root: Path) -> str:
        path = sorted((root / "Annotations").glob("train_*.xml"))[0]
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))
        return str(path)
    return mutate


VOC_CASES = {
    "broken-xml": (voc_edit("</annotation>", ""), ["not valid XML"]),
    "object-without-name": (voc_edit("<name>square</name>", ""), ["missing <name>"]),
    "object-without-bndbox": (lambda r: voc_edit("</bndbox>", "</box>")(r) and voc_edit("<bndbox>", "<box>")(r),
                              ["has no <bndbox>"]),
    "bad-coordinate": (voc_edit("<xmin>", "<xmin>x"), ["bad coordinate"]),
    "unknown-class": (voc_edit("<name>square</name>", "<name>hexagon</name>"), ["'hexagon' is not in the class list"]),
    "missing-split-list": (lambda r: (r / "ImageSets/Main/train.txt").unlink() or "train.txt", ["does not exist"]),
    "missing-xml": (lambda r: sorted((r / "Annotations").glob("train_*.xml"))[0].unlink() or "has no annotation file",
                    ["train_000000"]),
}


@pytest.mark.parametrize("case", list(VOC_CASES))
def test_bad_voc_data(case: str, base_sets: dict[str, Path], tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    mutate, expected = VOC_CASES[case]
    root = shutil.copytree(base_sets["voc"], tmp_path / "voc")
    where = mutate(root)
    cfg = detection_config(tmp_path / "c.yaml", "voc", root, class_names=["circle", "square"])
    code, text = run_cli(["fit", "--config", str(cfg), *FAST], capsys)
    assert_one_line_error(code, text, where, *expected)


# -- segmentation and classification data ------------------------------------------------------------
def _mask_path(root: Path) -> Path:
    return root / "masks" / "train" / "0.png"


def _wrong_mask_size(root: Path) -> str:
    Image.fromarray(np.zeros((20, 32), np.uint8)).save(_mask_path(root))
    return str(_mask_path(root))


def _unknown_mask_value(root: Path) -> str:
    mask = np.zeros((32, 32), np.uint8)
    mask[0, 0] = 9
    Image.fromarray(mask).save(_mask_path(root))
    return str(_mask_path(root))


def _missing_mask(root: Path) -> str:
    _mask_path(root).unlink()
    return str(_mask_path(root))


def _corrupt_mask(root: Path) -> str:
    _mask_path(root).write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return str(_mask_path(root))


def _missing_image_folder(root: Path) -> str:
    shutil.rmtree(root / "images")
    return str(root)


SEGMENTATION_CASES = {
    "mask-of-other-size": (_wrong_mask_size, ["is 32x20 (WxH)", "resize_mismatched_masks"]),
    "unknown-mask-value": (_unknown_mask_value, ["9"]),
    "missing-mask": (_missing_mask, ["have no mask", "skip_missing_masks"]),
    "corrupt-mask": (_corrupt_mask, ["cannot read"]),
    "truncated-image": (lambda r: truncate_first_image(r), ["cannot read image"]),
    "missing-image-folder": (_missing_image_folder, ["no 'train' split (expected images/<split>/"]),
}


@pytest.mark.parametrize("case", list(SEGMENTATION_CASES))
def test_bad_segmentation_data(case: str, base_sets: dict[str, Path], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    mutate, expected = SEGMENTATION_CASES[case]
    root = shutil.copytree(base_sets["seg"], tmp_path / "seg")
    where = mutate(root)
    cfg = segmentation_config(tmp_path / "c.yaml", root)
    code, text = run_cli(["fit", "--config", str(cfg), *FAST], capsys)
    assert_one_line_error(code, text, where, *expected)


def _no_class_folders(root: Path) -> str:
    for d in (root / "train").iterdir():
        shutil.rmtree(d)
    return str(root / "train")


CLASSIFICATION_CASES = {
    "missing-root": (lambda r: shutil.rmtree(r) or str(r), ["does not exist"]),
    "no-class-folders": (_no_class_folders, ["no class sub-folders"]),
    "truncated-image": (lambda r: truncate_first_image(r, "train"), ["cannot read image"]),
}


@pytest.mark.parametrize("case", list(CLASSIFICATION_CASES))
def test_bad_classification_data(case: str, base_sets: dict[str, Path], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    mutate, expected = CLASSIFICATION_CASES[case]
    root = shutil.copytree(base_sets["cls"], tmp_path / "cls")
    where = mutate(root)
    cfg = classification_config(tmp_path / "c.yaml", root)
    code, text = run_cli(["fit", "--config", str(cfg), *FAST], capsys)
    assert_one_line_error(code, text, where, *expected)


# -- config values ---------------------------------------------------------------------------------
CONFIG_CASES = {  # (task, extra arguments, expected pieces of the one line)
    "unknown-backbone": ("det", ["--model.init_args.backbone", "resnet19"],
                         ["unknown backbone 'resnet19'", "did you mean 'resnet18'"]),
    "unknown-detector": ("det", ["--model.init_args.model", "yolov2"], ["unknown detector 'yolov2'", "did you mean 'yolov1'"]),
    "unknown-format": ("det", ["--data.init_args.format", "yolov5"], ["unknown detection format 'yolov5'", "did you mean 'yolo'"]),
    "unknown-source": ("cls", ["--data.init_args.source", "imagefoldr"],
                       ["unknown classification source 'imagefoldr'", "did you mean 'imagefolder'"]),
    "unknown-detector-setting": ("det", ["--model.init_args.model_kwargs.grid_sise", "4"], ["grid_sise", "grid_size"]),
    "batch-size-text": ("det", ["--data.init_args.batch_size", "eight"],
                        ["option --data.init_args.batch_size", "Expected a <class 'int'>. Got value: eight"]),
    "batch-size-negative": ("det", ["--data.init_args.batch_size", "-4"], ["data.init_args.batch_size=-4: must be a number >= 1"]),
    "image-size-zero": ("cls", ["--data.init_args.image_size", "0"], ["data.init_args.image_size=0"]),
    "crop-size-negative": ("seg", ["--data.init_args.crop_size", "-32"], ["data.init_args.crop_size=-32"]),
    "misspelt-option": ("det", ["--data.init_args.batchsize", "4"],
                        ["option --data.init_args.batchsize is not accepted by DetectionDataModule",
                         "did you mean --data.init_args.batch_size"]),
    "unknown-argument": ("cls", ["--trainer.epochs", "3"],
                         ["option --trainer.epochs is not accepted by the 'trainer' section of 'fit'",
                          "did you mean --trainer.min_epochs or --trainer.max_epochs?"]),
    "max-epochs-text": ("cls", ["--trainer.max_epochs", "many"], ["option --trainer.max_epochs", "got many"]),
    "max-time-text": ("det", ["--trainer.max_time", "ten minutes"], ["trainer.max_time='ten minutes'", "DD:HH:MM:SS"]),
    "num-classes-mismatch": ("cls", ["--model.init_args.num_classes", "5"],
                             ["model.init_args.num_classes=5, but the data has 2 classes (ant, bee)"]),
    "seg-num-classes-vs-names": ("seg", ["--data.init_args.num_classes", "5"], ["num_classes=5 but the classes are 3"]),
    "scheduler-warmup": ("cls", ["--model.init_args.lr_scheduler", "visiontasks.schedulers.BudgetScheduler",
                                 "--model.init_args.lr_scheduler.init_args.warmup", "1.5"],
                         ["warmup=1.5: give a fraction in [0, 1)"]),
    "scheduler-schedule": ("cls", ["--model.init_args.lr_scheduler", "visiontasks.schedulers.BudgetScheduler",
                                   "--model.init_args.lr_scheduler.init_args.schedule", "cosin"],
                           ["option --model.init_args.lr_scheduler.init_args.schedule", "Got value: cosin"]),
    "scheduler-min-lr": ("cls", ["--model.init_args.lr_scheduler", "visiontasks.schedulers.BudgetScheduler",
                                 "--model.init_args.lr_scheduler.init_args.min_lr_ratio", "2"],
                         ["min_lr_ratio=2.0: must be in [0, 1]"]),
    "frozen-stages": ("det", ["--model.init_args.frozen_stages", "9"], ["frozen_stages must be in [0, 5], got 9"]),
    "config-file-missing": ("cls", ["--config", "no_such_config.yaml"], ["option --config", "no_such_config.yaml"]),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config_values(case: str, base_sets: dict[str, Path], tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    task, extra, expected = CONFIG_CASES[case]
    if task == "det":
        cfg = detection_config(tmp_path / "c.yaml", "yolo", base_sets["yolo"])
    elif task == "seg":
        cfg = segmentation_config(tmp_path / "c.yaml", base_sets["seg"])
    else:
        cfg = classification_config(tmp_path / "c.yaml", base_sets["cls"])
    code, text = run_cli(["fit", "--config", str(cfg), *FAST, *extra], capsys)
    assert_one_line_error(code, text, *expected)


# -- --ckpt_path -----------------------------------------------------------------------------------
def _fake_checkpoint(path: Path, task: str) -> Path:
    import torch

    torch.save({"state_dict": {}, "pytorch-lightning_version": "2.5.0",
                "hyper_parameters": {"_class_path": f"visiontasks.tasks.{task}"}}, path)
    return path


def _checkpoint_case(kind: str, tmp_path: Path) -> tuple[str, list[str]]:
    import torch

    if kind == "text-file":
        (tmp_path / "notes.ckpt").write_text("hello")
        return str(tmp_path / "notes.ckpt"), ["notes.ckpt is not a Lightning checkpoint"]
    if kind == "state-dict":
        torch.save({"conv.weight": torch.zeros(2)}, tmp_path / "w.pth")
        return str(tmp_path / "w.pth"), ["w.pth is not a Lightning checkpoint (it holds a plain state_dict)"]
    if kind == "missing":
        return str(tmp_path / "gone.ckpt"), ["gone.ckpt does not exist"]
    if kind == "other-task":
        path = _fake_checkpoint(tmp_path / "seg.ckpt", "SegmentationTask")
        return str(path), ["seg.ckpt was written by SegmentationTask, but the config's model is DetectionTask"]
    return "last", ["--ckpt_path last: no run with checkpoints/last.ckpt"]


@pytest.mark.parametrize("kind", ["text-file", "state-dict", "missing", "other-task", "last-without-run"])
@pytest.mark.parametrize("command", ["test", "fit"])
def test_bad_checkpoint_paths(kind: str, command: str, base_sets: dict[str, Path], tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, expected = _checkpoint_case(kind, tmp_path)
    cfg = detection_config(tmp_path / "c.yaml", "yolo", base_sets["yolo"], test="val")
    code, text = run_cli([command, "--config", str(cfg), "--ckpt_path", ckpt,
                          "--trainer.enable_progress_bar", "false"], capsys)
    assert_one_line_error(code, text, *expected)


# -- visiontasks evaluate ----------------------------------------------------------------------------
def _evaluate_case(kind: str, sets: dict[str, Path], tmp_path: Path) -> tuple[list[str], list[str]]:
    gt = ["--gt", str(sets["coco"]), "--format", "coco", "--split", "val", "--output", str(tmp_path / "out")]
    pred = tmp_path / "pred.json"
    if kind == "missing-pred":
        return ["detection", *gt, "--pred", str(pred)], [str(pred), "does not exist"]
    if kind == "broken-pred-json":
        pred.write_text("[{\"image_id\": 0,")
        return ["detection", *gt, "--pred", str(pred)], [str(pred)]
    if kind == "pred-unknown-category":
        pred.write_text(json.dumps([{"image_id": 0, "category_id": 42, "bbox": [1, 1, 5, 5], "score": 0.9}]))
        return ["detection", *gt, "--pred", str(pred)], [str(pred), "42"]
    if kind == "pred-unknown-image":
        pred.write_text(json.dumps([{"image_id": 777, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.9}]))
        return ["detection", *gt, "--pred", str(pred)], [str(pred), "777"]
    if kind == "gt-format-unknown":
        return ["detection", "--gt", str(sets["coco"]), "--format", "cocoo", "--pred", str(pred)], ["did you mean 'coco'"]
    if kind == "segmentation-missing-gt":
        return ["segmentation", "--gt", str(tmp_path / "nomasks"), "--pred", str(tmp_path)], ["nomasks", "does not exist"]
    bad_csv = tmp_path / "pred.csv"
    bad_csv.write_text("filename;class\n")
    return ["classification", "--gt", str(sets["cls"] / "val"), "--pred", str(bad_csv)], [str(bad_csv)]


@pytest.mark.parametrize("kind", ["missing-pred", "broken-pred-json", "pred-unknown-category", "pred-unknown-image",
                                  "gt-format-unknown", "segmentation-missing-gt", "classification-bad-csv"])
def test_evaluate_bad_inputs(kind: str, base_sets: dict[str, Path], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    args, expected = _evaluate_case(kind, base_sets, tmp_path)
    code, text = run_cli(["evaluate", *args], capsys)
    assert_one_line_error(code, text, *expected)


# -- counted skips: the options that turn an error into a warning with a count ------------------------------
def test_bad_yolo_lines_skipped_by_option(base_sets: dict[str, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    root = shutil.copytree(base_sets["yolo"], tmp_path / "yolo")
    label = first_label(root)
    label.write_text("0 nan 0.5 0.2 0.2\n1 0.5 0.5 0.3 0.3\n0 0.5 0.5 1.5 0.2\n")
    cfg = detection_config(tmp_path / "c.yaml", "yolo", root, skip_bad_labels=True)
    with pytest.warns(UserWarning, match=r"skipped 2 bad label line\(s\) \(skip_bad_labels\); first: .*line 1: NaN"):
        code = main(["fit", "--config", str(cfg), *FAST])
    assert code == 0


def test_unreadable_images_skipped_by_option(base_sets: dict[str, Path], tmp_path: Path) -> None:
    root = shutil.copytree(base_sets["yolo"], tmp_path / "yolo")
    truncate_first_image(root)
    cfg = detection_config(tmp_path / "c.yaml", "yolo", root, skip_bad_images=True)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\)"):
        assert main(["fit", "--config", str(cfg), *FAST]) == 0


# -- the console script itself (exit status from the process, stderr as the user sees it) -------------
def test_console_script(base_sets: dict[str, Path], tmp_path: Path) -> None:
    """One data mistake through ``python -m visiontasks.cli`` (tests/test_cli_errors.py runs a config
    mistake the same way, and VISIONTASKS_DEBUG=1)."""
    root = shutil.copytree(base_sets["yolo"], tmp_path / "yolo")
    where = set_label("0 0.5 nan 0.2 0.2")(root)
    cfg = detection_config(tmp_path / "c.yaml", "yolo", root)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("VISIONTASKS_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "visiontasks.cli", "fit", "--config", str(cfg), *FAST],
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert_one_line_error(proc.returncode, proc.stdout + proc.stderr, where, "NaN or infinite coordinate")
