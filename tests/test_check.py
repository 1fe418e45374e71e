"""``visiontasks check``: every planted problem of a tiny data set is reported at once (file, and line
for YOLO), exit status 2 and no traceback; a clean set exits 0 and writes its plots; ``check: true``
stops ``fit`` with the list."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from visiontasks.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _image(path: Path, size: tuple[int, int] = (40, 48), seed: int = 0) -> Path:
    """An RGB PNG of ``size`` (H, W) with random pixels (distinct files per seed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an image at all")
    return path


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _config(tmp: Path, data: dict, model: dict | None = None) -> Path:
    cfg = {"data": data}
    if model is not None:
        cfg["model"] = model
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _check(config: Path, out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["check", "--config", str(config), "--output", str(out), "--no-progress", *extra])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text
    return code, text


def _line_with(text: str, *parts: str) -> str:
    """The one output line holding all of ``parts``."""
    found = [line for line in text.splitlines() if all(p in line for p in parts)]
    assert found, f"no line with {parts} in:\n{text}"
    return found[0]


# -- detection: YOLO ----------------------------------------------------------------------------------
def _yolo_set(root: Path) -> dict[str, Path]:
    """train: 3 good images + a corrupt one + a truncated one + one whose label file has two bad
    lines; test: a copy of a train image; val: empty; an orphan label file."""
    files = {}
    for i in range(3):
        _image(root / f"images/train/ok{i}.png", seed=i)
        (root / f"labels/train/ok{i}.txt").parent.mkdir(parents=True, exist_ok=True)
        extra = "1 0.52 0.5 0.1 0.1\n" if i == 0 else ""  # two centres in one YOLOv1 cell
        (root / f"labels/train/ok{i}.txt").write_text("0 0.5 0.5 0.4 0.4\n1 0.3 0.3 0.2 0.2\n" + extra)
    files["corrupt"] = _corrupt(root / "images/train/corrupt.png")
    files["truncated"] = _truncate(_image(root / "images/train/truncated.png", (200, 200), seed=9))
    files["badlines"] = _image(root / "images/train/badlines.png", seed=5)
    files["badlabel"] = root / "labels/train/badlines.txt"
    files["badlabel"].write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n1 0.5 abc 0.2 0.2\n")
    files["dup"] = root / "images/test/copy.png"
    files["dup"].parent.mkdir(parents=True)
    files["dup"].write_bytes((root / "images/train/ok0.png").read_bytes())
    (root / "images/val").mkdir(parents=True)
    files["orphan"] = root / "labels/train/nobody.txt"
    files["orphan"].write_text("0 0.5 0.5 0.1 0.1\n")
    (root / "data.yaml").write_text(yaml.safe_dump(
        {"path": ".", "train": "images/train", "val": "images/val", "test": "images/test", "names": ["a", "b"]}))
    return files


def test_yolo_every_planted_problem_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = _yolo_set(tmp_path / "yolo")
    config = _config(tmp_path, {"class_path": "visiontasks.data.DetectionDataModule",
                                "init_args": {"format": "yolo", "root": str(tmp_path / "yolo"),
                                              "test": "test", "image_size": 64}},
                     {"class_path": "visiontasks.tasks.DetectionTask", "init_args": {"model": "yolov1"}})
    code, text = _check(config, tmp_path / "out", capsys, "--workers", "2")
    assert code == 2
    assert "cannot decode the image" in _line_with(text, "error:", str(files["corrupt"]))
    assert "cannot decode the image" in _line_with(text, "error:", str(files["truncated"]))
    assert "outside the 2 classes" in _line_with(text, "error:", f"{files['badlabel']}, line 2")
    assert "non-numeric" in _line_with(text, "error:", f"{files['badlabel']}, line 3")
    assert "[val] val: the split has no images" in _line_with(text, "error:", "[val]")
    assert "is in split 'train'" in _line_with(text, "warning:", str(files["dup"]))
    assert "label file without an image" in _line_with(text, "warning:", str(files["orphan"]))
    assert "yolov1 grid 7x7: 1 box(es) share a grid cell" in text
    problems = (tmp_path / "out/problems.txt").read_text()
    assert problems.count("error:") == 5  # corrupt, truncated, 2 bad lines, empty val


# -- detection: COCO ----------------------------------------------------------------------------------
def test_coco_boxes_and_missing_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "coco"
    for i in range(3):
        _image(root / f"images/train/{i}.png", seed=i)
    images = [{"id": i, "file_name": f"{i}.png", "height": 40, "width": 48} for i in range(3)]
    images.append({"id": 3, "file_name": "missing.png", "height": 40, "width": 48})
    anns = [
        {"id": 1, "image_id": 0, "category_id": 1, "bbox": [5, 5, 10, 10]},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [40, 30, 30, 30]},  # reaches outside: clipped
        {"id": 3, "image_id": 2, "category_id": 1, "bbox": [100, 100, 5, 5]},  # wholly outside: dropped
        {"id": 4, "image_id": 3, "category_id": 1, "bbox": [1, 1, 5, 5]},  # on the missing image
        {"id": 5, "image_id": 99, "category_id": 1, "bbox": [1, 1, 5, 5]},  # an unknown image
        {"id": 6, "image_id": 0, "category_id": 7, "bbox": [1, 1, 5, 5]},  # an unknown category
    ]
    ann_file = root / "annotations/instances_train.json"
    ann_file.parent.mkdir(parents=True)
    ann_file.write_text(json.dumps({"images": images, "annotations": anns,
                                    "categories": [{"id": 1, "name": "thing"}]}))
    config = _config(tmp_path, {"class_path": "visiontasks.data.DetectionDataModule",
                                "init_args": {"format": "coco", "root": str(root), "val": "train"}})
    code, text = _check(config, tmp_path / "out", capsys)
    assert code == 2
    assert "missing.png, which does not exist" in _line_with(text, "error:", str(ann_file), "image id 3")
    assert "not in 'images'" in _line_with(text, "error:", str(ann_file), "annotation 5")
    assert "category_id 7" in _line_with(text, "error:", str(ann_file), "annotation 6")
    assert "it is clipped" in _line_with(text, "warning:", f"{ann_file}, annotation 2")
    assert "it is dropped" in _line_with(text, "warning:", f"{ann_file}, annotation 3")


def test_voc_every_bad_xml_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from visiontasks.data.detection import DetectionRecord, write_voc_xml

    root = tmp_path / "voc"
    ids = []
    for i in range(3):
        img = _image(root / f"JPEGImages/{i}.png", seed=i)
        rec = DetectionRecord(img, i, np.array([[2, 2, 20, 20]], np.float32), np.array([0]), (40, 48))
        write_voc_xml(root / f"Annotations/{i}.xml", rec, ["cat"])
        ids.append(str(i))
    xml1 = root / "Annotations/1.xml"
    xml1.write_text(xml1.read_text().replace("<name>cat</name>", "<name>dog</name>"))
    xml2 = root / "Annotations/2.xml"
    xml2.write_text(xml2.read_text().replace("2.png", "gone.png"))
    (root / "ImageSets/Main").mkdir(parents=True)
    (root / "ImageSets/Main/train.txt").write_text("\n".join([*ids, "3"]) + "\n")
    config = _config(tmp_path, {"class_path": "visiontasks.data.DetectionDataModule",
                                "init_args": {"format": "voc", "root": str(root), "val": "train",
                                              "class_names": ["cat"]}})
    code, text = _check(config, tmp_path / "out", capsys)
    assert code == 2
    assert "'dog' is not in the class list" in _line_with(text, "error:", str(xml1))
    assert "gone.png, which does not exist" in _line_with(text, "error:", str(xml2))
    assert "has no annotation file" in _line_with(text, "error:", "id '3'")


# -- segmentation -------------------------------------------------------------------------------------
def _mask(path: Path, size: tuple[int, int], value: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros(size, np.uint8)
    m[5:15, 5:15] = value
    Image.fromarray(m, "L").save(path)


def test_segmentation_masks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "seg"
    for i in range(2):
        _image(root / f"images/train/{i}.png", seed=i)
        _mask(root / f"masks/train/{i}.png", (40, 48))
    _image(root / "images/train/wrong_size.png", seed=3)
    _mask(root / "masks/train/wrong_size.png", (20, 20))
    _image(root / "images/train/unknown.png", seed=4)
    _mask(root / "masks/train/unknown.png", (40, 48), value=9)
    _image(root / "images/train/nomask.png", seed=5)
    _image(root / "images/val/v.png", seed=6)
    _mask(root / "masks/val/v.png", (40, 48))
    config = _config(tmp_path, {"class_path": "visiontasks.data.SegmentationDataModule",
                                "init_args": {"root": str(root), "format": "folder", "num_classes": 3,
                                              "test_split": None}})
    code, text = _check(config, tmp_path / "out", capsys, "--workers", "2")  # the decoder pickles
    assert code == 2
    assert "is 20x20 but its image" in _line_with(text, "error:", str(root / "masks/train/wrong_size.png"))
    assert "has values [9]" in _line_with(text, "error:", str(root / "masks/train/unknown.png"))
    assert "nomask.png" in _line_with(text, "error:", "have no mask")
    assert (tmp_path / "out/mask_pixel_share.png").is_file()


# -- classification, and a clean set ------------------------------------------------------------------
def _image_folder(root: Path) -> None:
    for split, n in (("train", 4), ("val", 2)):
        for c, name in enumerate(("ants", "bees")):
            for i in range(n):
                _image(root / split / name / f"{i}.png", seed=100 * c + 10 * (split == "val") + i)


def test_clean_image_folder_exits_0_with_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _image_folder(tmp_path / "hym")
    config = _config(tmp_path, {"class_path": "visiontasks.data.ClassificationDataModule",
                                "init_args": {"source": "imagefolder", "root": "elsewhere"}})
    code, text = _check(config, tmp_path / "out", capsys, "--data.init_args.root", str(tmp_path / "hym"))
    assert code == 0, text
    assert "0 error(s), 0 warning(s)" in text
    assert "ants 4, bees 4" in text
    for name in ("image_sizes.png", "class_histogram.png"):
        assert (tmp_path / "out" / name).stat().st_size > 1000


def test_image_folder_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "hym"
    _image_folder(root)
    _corrupt(root / "train/ants/broken.jpg")
    Image.new("P", (30, 30)).save(root / "train/bees/placeholder.gif")
    (root / "val/ants/0.png").write_bytes((root / "train/ants/0.png").read_bytes())
    config = _config(tmp_path, {"class_path": "visiontasks.data.ClassificationDataModule",
                                "init_args": {"source": "imagefolder", "root": str(root)}})
    code, text = _check(config, tmp_path / "out", capsys)
    assert code == 2
    _line_with(text, "error:", str(root / "train/ants/broken.jpg"), "cannot decode")
    _line_with(text, "warning:", str(root / "train/bees/placeholder.gif"), "GIF")
    _line_with(text, "warning:", str(root / "val/ants/0.png"), "is in split 'train'")


def test_check_true_stops_fit_with_the_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "hym"
    _image_folder(root)
    _corrupt(root / "train/ants/broken.jpg")
    _truncate(_image(root / "train/bees/cut.png", (200, 200), seed=7))
    code = main(["fit", "--config", str(ROOT / "configs/classification/lenet5_digits.yaml"),
                 "--data.init_args.source", "imagefolder", "--data.init_args.root", str(root),
                 "--data.init_args.check", "true", "--trainer.default_root_dir", str(tmp_path / "runs"),
                 "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert "the data check found 2 problem(s) that stop training" in err
    assert str(root / "train/ants/broken.jpg") in err and str(root / "train/bees/cut.png") in err
    assert not list((tmp_path / "runs").rglob("*.ckpt"))


@pytest.mark.slow  # a fresh interpreter importing Lightning: ~20 s on a busy machine
def test_console_script_exit_status(tmp_path: Path) -> None:
    """Through the installed entry point's module: exit status 2 and no traceback on stderr."""
    root = tmp_path / "hym"
    _image_folder(root)
    _corrupt(root / "train/ants/broken.jpg")
    config = _config(tmp_path, {"class_path": "visiontasks.data.ClassificationDataModule",
                                "init_args": {"source": "imagefolder", "root": str(root)}})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "visiontasks.cli", "check", "--config", str(config),
                           "--output", str(tmp_path / "out"), "--no-plots"],
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "broken.jpg" in proc.stdout


def test_config_mistakes_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, {"class_path": "visiontasks.data.ClassificationDataModule",
                                "init_args": {"source": "imagefolder", "rooot": "x"}})
    for args, expected in (([str(config)], "the data section does not build: Option 'rooot' is not accepted"),
                           ([str(tmp_path / "none.yaml")], "none.yaml does not exist")):
        assert main(["check", "--config", *args]) == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1


def test_anchor_priors_and_input_scale() -> None:
    from visiontasks.commands.check import model_priors, shape_iou
    from visiontasks.data.detection.check import input_canvas, input_scale

    priors = model_priors({"init_args": {"model": "faster_rcnn", "model_kwargs": {"anchor_sizes": [64],
                                                                                  "aspect_ratios": [0.5, 2.0]}}})
    # torchvision's ratio is h / w: ratio 2 -> w = 64 / sqrt(2), h = 64 * sqrt(2)
    assert np.allclose(priors["boxes"], [(64 * 2**0.5, 64 / 2**0.5), (64 / 2**0.5, 64 * 2**0.5)])
    iou = shape_iou(np.array([[64 / 2**0.5, 64 * 2**0.5], [32.0, 32.0]]), np.array(priors["boxes"]))
    assert np.isclose(iou[0, 1], 1.0) and np.isclose(iou[1].max(), 1024 / 4096)
    assert model_priors({"init_args": {"model": "faster_rcnn"}})["sizes"] == [128.0, 256.0, 512.0]
    assert model_priors({"init_args": {"model": "yolov1", "model_kwargs": {"grid_size": 5}}}) == \
        {"kind": "grid", "name": "yolov1", "S": 5}
    assert input_scale((300, 600), 448, "letterbox") == (448 / 600, 448 / 600)
    assert input_canvas((300, 600), 448, "letterbox") == (448, 448)
    assert input_scale((300, 600), [800, 1333], "shortest_edge") == (1333 / 600, 1333 / 600)  # max side wins
    assert input_scale((600, 700), [800, 1333], "shortest_edge") == (800 / 600, 800 / 600)
    assert input_scale((300, 600), [100, 200], "stretch") == (200 / 600, 100 / 300)


def test_priors_come_from_the_detector_class() -> None:
    """``visiontasks check`` asks the detector class (``Detector.box_priors``), so a subclass of Faster
    R-CNN has its anchors and a detector without priors says so."""
    from visiontasks.commands.check import model_priors
    from visiontasks.heads.faster_rcnn import FasterRCNN

    fpn = model_priors({"init_args": {"model": "faster_rcnn", "model_kwargs": {"fpn": True}}})
    assert fpn["sizes"] == [32.0, 64.0, 128.0, 256.0, 512.0] and "5 levels assumed" in fpn["note"]
    assert model_priors({"init_args": {"model": "mask_rcnn"}})["boxes"] == FasterRCNN.box_priors({})["boxes"]
    assert model_priors({"init_args": {"model": "ssd"}}) == {"kind": "none", "name": "ssd"}
    assert model_priors({"init_args": {"model": "no_such"}}) == {"kind": "none", "name": "no_such"}
    assert model_priors(None) == {}
