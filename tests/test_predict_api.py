"""``load_model(ckpt).predict(...)`` and ``visiontasks predict --ckpt_path X --source ...`` equal
``visiontasks predict --config ...`` on the same checkpoint, for each task family (tiny models
trained for two steps through the real CLI on tiny synthetic data)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from visiontasks.cli import main
from visiontasks.errors import InvalidInputError, MissingFileError, UserInputError

FAMILIES = ("classification", "segmentation", "detection")
TRAINER = {"max_steps": 2, "limit_val_batches": 1, "accelerator": "cpu", "devices": 1,
           "enable_progress_bar": False, "enable_model_summary": False, "log_every_n_steps": 1}
BATCH = 2  # the CLI's eval batch size and the API's (segmentation pads a batch to its largest image)


def write_photos(folder: Path) -> Path:
    """Images of every kind the readers convert: EXIF-turned JPEG, grey, RGBA, 16-bit, palette."""
    rng = np.random.default_rng(0)
    (folder / "sub").mkdir(parents=True)
    rgb = rng.integers(0, 255, (40, 52, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned by 90 degrees
    Image.fromarray(rgb).save(folder / "a_turned.jpg", exif=exif, quality=95)
    Image.fromarray(rng.integers(0, 255, (44, 36), dtype=np.uint8), "L").save(folder / "b_grey.png")
    Image.fromarray(rng.integers(0, 255, (36, 48, 4), dtype=np.uint8), "RGBA").save(folder / "c_rgba.png")
    Image.fromarray(rng.integers(0, 65535, (40, 40), dtype=np.uint16)).save(folder / "d_16bit.png")
    Image.fromarray(rng.integers(0, 8, (38, 46), dtype=np.uint8), "P").save(folder / "sub" / "e_palette.png")
    return folder


def config(family: str, root: Path, photos: Path) -> dict:
    if family == "classification":
        model = {"class_path": "visiontasks.tasks.ClassificationTask", "init_args": {"backbone": "lenet5"}}
        data = {"class_path": "visiontasks.data.ClassificationDataModule", "init_args": {
            "source": "synthetic", "root": str(root / "data"), "image_size": 24, "synthetic_classes": 3,
            "synthetic_per_class": 12, "val_fraction": 0.25, "test_fraction": 0.25, "batch_size": BATCH,
            "predict_root": str(photos)}}
    elif family == "segmentation":
        model = {"class_path": "visiontasks.tasks.SegmentationTask", "init_args": {
            "model": "fcn32s", "backbone": "resnet18", "fc_channels": 8, "fc_kernel_size": 1, "dropout": 0.0}}
        data = {"class_path": "visiontasks.data.SegmentationDataModule", "init_args": {
            "format": "synthetic", "root": str(root / "data"), "synthetic": {"counts": [4, 2, 2], "image_size": 32,
            "num_shapes": 2}, "crop_size": 32, "batch_size": BATCH, "predict_root": str(photos)}}
    else:
        model = {"class_path": "visiontasks.tasks.DetectionTask", "init_args": {
            "model": "faster_rcnn", "backbone": "resnet18", "model_kwargs": {
                "anchor_sizes": [16, 32, 64], "representation_size": 32, "rpn_pre_nms_top_n_test": 50,
                "rpn_post_nms_top_n_test": 20, "roi_op": "pool", "score_thresh": 0.0, "detections_per_img": 20}}}
        data = {"class_path": "visiontasks.data.DetectionDataModule", "init_args": {
            "format": "coco", "root": str(root / "data"), "image_size": 64, "resize": "letterbox",
            "synthetic": {"splits": {"train": 4, "val": 2}, "image_size": 64, "num_classes": 2},
            "predict": {"images": "photos"}, "batch_size": BATCH}}
    return {"seed_everything": 0, "model": model, "data": data, "trainer": TRAINER}


class Trained:
    """A family's run: the checkpoint, the photos, and the CLI's prediction folders."""

    def __init__(self, family: str, root: Path) -> None:
        self.family, self.root = family, root
        photos_parent = root / "data" if family == "detection" else root  # detection: inside its root
        cfg_path = root / f"{family}.yaml"
        common = ["--config", str(cfg_path), "--trainer.default_root_dir", str(root / "runs")]
        with mock.patch.object(sys, "argv", ["visiontasks"]):  # LightningCLI looks at sys.argv too
            cfg_path.write_text(yaml.safe_dump(config(family, root, photos_parent / "photos")))
            if family != "detection":
                write_photos(photos_parent / "photos")
            assert main(["fit", *common]) == 0
            if family == "detection":  # the synthetic set exists now; the photos go inside its root
                write_photos(photos_parent / "photos")
            self.run = root / "runs" / family / "version_0"
            self.ckpt = self.run / "checkpoints" / "last.ckpt"
            assert main(["predict", *common, "--ckpt_path", str(self.ckpt)]) == 0
        self.photos = (photos_parent / "photos").resolve() if family == "detection" else photos_parent / "photos"
        self.cli_out = self.run / "predict" / "predictions"
        self.source_out = root / "source_out"
        assert main(["predict", "--ckpt_path", str(self.ckpt), "--source", str(self.photos), "--output",
                     str(self.source_out), "--batch_size", str(BATCH), "--device", "cpu"]) == 0


@pytest.fixture(scope="module")
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return Trained(request.param, tmp_path_factory.mktemp(request.param))


def cli_predictions(t: Trained) -> dict[str, dict]:
    """The config run's predictions per file stem."""
    if t.family == "classification":
        rows = json.loads((t.cli_out / "predictions.json").read_text())
        return {Path(r["id"]).stem: r for r in rows}
    if t.family == "segmentation":
        return {p.name[: -len("_mask.png")]: {"mask": np.asarray(Image.open(p))} for p in t.cli_out.glob("*_mask.png")}
    stems = {int(p.name.split("_", 1)[0]): p.stem.split("_", 1)[1] for p in t.cli_out.glob("*.png")}
    out: dict[str, dict] = {s: {"boxes": [], "scores": []} for s in stems.values()}
    for r in json.loads((t.cli_out / "results.json").read_text()):
        x, y, w, h = r["bbox"]
        out[stems[r["image_id"]]]["boxes"].append([x, y, x + w, y + h])
        out[stems[r["image_id"]]]["scores"].append(r["score"])
    return out


def assert_same(family: str, result, expected: dict) -> None:
    if family == "classification":
        names = result.class_names
        assert result.name == expected["name"] and result.label == expected["index"]
        assert result.probs.tolist() == pytest.approx([expected[f"p_{n}"] for n in names], abs=2e-6)
    elif family == "segmentation":
        assert np.array_equal(result.mask.numpy(), expected["mask"])
    else:
        assert len(result.boxes) == len(expected["boxes"]) > 0
        assert torch.allclose(result.boxes, torch.tensor(expected["boxes"]), atol=0.011)  # 2 decimals in the file
        assert result.scores.tolist() == pytest.approx(expected["scores"], abs=1e-5)
        assert result.names == [result.class_names[k] for k in result.labels.tolist()]


@pytest.mark.slow
@pytest.mark.parametrize("trained", FAMILIES, indirect=True)
def test_load_model_predict_equals_the_cli_with_its_data_config(trained: Trained) -> None:
    from visiontasks import load_model

    model = load_model(trained.ckpt, device="cpu")
    expected = cli_predictions(trained)
    results = model.predict(trained.photos, batch_size=BATCH)  # a folder (recursive)
    assert [Path(r.source).stem for r in results] == ["a_turned", "b_grey", "c_rgba", "d_16bit", "e_palette"]
    assert sorted(expected) == sorted(Path(r.source).stem for r in results)
    for r in results:
        assert_same(trained.family, r, expected[Path(r.source).stem])
    if trained.family == "segmentation":  # masks at each file's size, EXIF turn applied (52x40 -> 40x52)
        assert tuple(results[0].mask.shape) == (52, 40)

    # files, a glob, PIL images and numpy arrays in one list give the same as the folder (in the same
    # batches of two: segmentation pads a batch to its largest image, which may change border pixels)
    turned, rgba = trained.photos / "a_turned.jpg", trained.photos / "c_rgba.png"
    grey = np.asarray(Image.open(trained.photos / "b_grey.png"))
    mixed = model.predict([str(turned), grey, Image.open(rgba), trained.photos / "d_16bit.png",
                           str(trained.photos / "sub" / "*.png")], batch_size=BATCH)
    assert [r.source for r in mixed] == [str(turned), "image1", "image2", str(trained.photos / "d_16bit.png"),
                                         str(trained.photos / "sub" / "e_palette.png")]
    assert [r.path is None for r in mixed] == [False, True, True, False, False]
    for r, stem in zip(mixed, ["a_turned", "b_grey", "c_rgba", "d_16bit", "e_palette"]):
        assert_same(trained.family, r, expected[stem])


@pytest.mark.slow
@pytest.mark.parametrize("trained", FAMILIES, indirect=True)
def test_predict_source_writes_the_same_files_as_the_config_run(trained: Trained, tmp_path: Path) -> None:
    ours = sorted(p.name for p in trained.source_out.iterdir())
    theirs = sorted(p.name for p in trained.cli_out.iterdir())
    assert ours == theirs and ours
    for name in ours:
        a, b = trained.source_out / name, trained.cli_out / name
        if name.endswith(".png"):
            assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b))), name
        else:
            assert a.read_text() == b.read_text(), name

    # Result.save draws the picture the writers draw
    from visiontasks import load_model

    results = load_model(trained.ckpt, device="cpu").predict(trained.photos, batch_size=BATCH)
    for i, r in enumerate(results):
        saved = np.asarray(Image.open(r.save(tmp_path / f"{i}.png")))
        stem = Path(r.source).stem
        if trained.family == "segmentation":
            assert np.array_equal(saved, np.asarray(Image.open(trained.cli_out / f"{stem}_overlay.png")))
            mask = np.asarray(Image.open(r.save_mask(tmp_path / f"{i}_mask.png")))
            assert np.array_equal(mask, np.asarray(Image.open(trained.cli_out / f"{stem}_mask.png")))
        elif trained.family == "detection":
            assert np.array_equal(saved, np.asarray(Image.open(trained.cli_out / f"{i:06d}_{stem}.png")))
        else:
            assert saved.shape == r.image().shape and not np.array_equal(saved, r.image())  # the label is drawn


def test_predict_takes_torch_tensors_as_the_same_numpy_image() -> None:
    """A ``[3, H, W]`` tensor (uint8 0..255 or float 0..1), a ``[B, 3, H, W]`` batch, or either in a
    list gives the result of the same picture as a numpy array / PIL image: boxes in the tensor's
    ``H x W`` pixels. Wrong shapes, dtypes and float ranges are one-line errors saying what to pass.
    An untrained detector (score_thresh 0: it returns boxes) is enough to compare inputs."""
    from visiontasks.predictor import Predictor
    from visiontasks.preprocessing import Preprocessing
    from visiontasks.tasks import DetectionTask

    torch.manual_seed(0)
    task = DetectionTask(model="faster_rcnn", backbone="resnet18", num_classes=2, model_kwargs={
        "anchor_sizes": [16, 32, 64], "representation_size": 32, "rpn_pre_nms_top_n_test": 50,
        "rpn_post_nms_top_n_test": 20, "roi_op": "pool", "score_thresh": 0.0, "detections_per_img": 20})
    task.preprocessing = Preprocessing("letterbox", (64, 64))
    model = Predictor(task, "cpu")
    rgb = np.random.default_rng(0).integers(0, 256, (2, 40, 52, 3), dtype=np.uint8)  # not square: H 40, W 52
    chw = torch.from_numpy(rgb).permute(0, 3, 1, 2)  # [2, 3, 40, 52]
    expected = model.predict([rgb[0], Image.fromarray(rgb[1])], batch_size=2)
    assert all(len(r.boxes) > 0 for r in expected)

    cases = [(chw, ["image0", "image1"]),  # a batch alone is its images
             ([chw[0], chw[1].float() / 255], ["image0", "image1"]),  # uint8 and float 0..1
             ([chw], ["image0_0", "image0_1"])]  # a batch inside a list
    for images, names in cases:
        results = model.predict(images, batch_size=2)
        assert [r.source for r in results] == names
        for r, e, pixels in zip(results, expected, rgb):
            assert torch.equal(r.boxes, e.boxes) and torch.equal(r.scores, e.scores), r.source
            assert torch.equal(r.labels, e.labels) and r.path is None
            assert np.array_equal(r.image(), pixels)  # the tensor's own pixels, [40, 52, 3]
    single = model.predict(chw[1], batch_size=1)[0]  # one [3, H, W] tensor alone
    assert single.source == "image0" and torch.allclose(single.boxes, expected[1].boxes, atol=1e-4)
    assert single.boxes[:, 0::2].max() <= 52 and single.boxes[:, 1::2].max() <= 40

    hwc = torch.from_numpy(rgb[0].copy())
    bad = [(torch.rand(3, 40, 52) * 2, r"image0: float tensor values [0-9.e-]+\.\.[0-9.]+ lie outside \[0, 1\]; pass"),
           (torch.full((3, 8, 8), float("nan")), "image0: the float tensor holds NaN"),
           (hwc, r"image0: a tensor of shape \(40, 52, 3\) is not an image.*permute\(2, 0, 1\)"),
           ([chw[0], torch.zeros(2, 40, 52, 3)], r"image1: a tensor of shape \(2, 40, 52, 3\).*permute\(0, 3, 1, 2\)"),
           (torch.zeros(3, 8, 8, dtype=torch.int64), r"image0: a tensor of dtype int64; pass an RGB \[3, H, W\]")]
    for images, message in bad:
        with pytest.raises(InvalidInputError, match=message) as err:
            model.predict(images)
        assert "\n" not in str(err.value) and "uint8 0..255 or float 0..1" in str(err.value)


# -- errors --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classifier checkpoint written from Python (no LightningCLI ``_class_path`` in it)."""
    import lightning.pytorch as pl

    from visiontasks.data import ClassificationDataModule
    from visiontasks.tasks import ClassificationTask

    root = tmp_path_factory.mktemp("tiny")
    data = ClassificationDataModule(source="digits", root=str(root / "d"), image_size=12, in_chans=1, batch_size=16)
    task = ClassificationTask(num_classes=10, backbone="lenet5", in_chans=1)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=str(root), limit_val_batches=1, enable_checkpointing=False)
    trainer.fit(task, datamodule=data)
    trainer.save_checkpoint(root / "m.ckpt")
    return root / "m.ckpt"


def test_python_checkpoint_grey_model_and_any_image_mode(tiny_ckpt: Path, tmp_path: Path) -> None:
    from visiontasks import load_model

    model = load_model(tiny_ckpt, device="cpu")
    assert model.family == "classification" and model.preprocessing.in_chans == 1
    photos = write_photos(tmp_path / "photos")
    from_files = model.predict(photos)
    arrays = [np.asarray(Image.open(photos / "c_rgba.png")), np.asarray(Image.open(photos / "d_16bit.png")),
              np.asarray(Image.open(photos / "c_rgba.png")).astype(np.float32) / 255]
    from_arrays = model.predict(arrays)
    by_stem = {Path(r.source).stem: r for r in from_files}
    for r, stem in zip(from_arrays, ["c_rgba", "d_16bit", "c_rgba"]):
        assert r.label == by_stem[stem].label
        assert torch.allclose(r.probs, by_stem[stem].probs, atol=1e-5)


def test_bad_inputs_give_one_line_errors_naming_the_path(tiny_ckpt: Path, tmp_path: Path, capsys) -> None:
    from visiontasks import load_model

    model = load_model(tiny_ckpt, device="cpu")
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.png").write_bytes(b"not an image")
    cases = [
        (str(tmp_path / "missing.jpg"), MissingFileError, "missing.jpg"),
        (str(tmp_path / "empty"), InvalidInputError, "holds no image files"),
        (str(tmp_path / "nothing" / "*.png"), MissingFileError, "matches no image files"),
        (str(tmp_path / "broken.png"), InvalidInputError, "broken.png"),
    ]
    for source, error, text in cases:
        with pytest.raises(error, match=text):
            model.predict(source)
        assert main(["predict", "--ckpt_path", str(tiny_ckpt), "--source", source, "--output",
                     str(tmp_path / "out"), "--device", "cpu"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and text in err[0] and err[0].startswith("visiontasks predict: error:"), err
    with pytest.raises(InvalidInputError, match="cannot predict on a dict"):
        model.predict([{"image": 1}])


def test_checkpoint_without_preprocessing_and_non_checkpoints(tiny_ckpt: Path, tmp_path: Path, capsys) -> None:
    from visiontasks import load_model

    old = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    old.pop("preprocessing")
    old.pop("task_class")  # as written before both existed: the class is told by its hyper-parameters
    torch.save(old, tmp_path / "old.ckpt")
    with pytest.raises(InvalidInputError, match=r"old\.ckpt has no evaluation preprocessing.*--config"):
        load_model(tmp_path / "old.ckpt")
    assert main(["predict", "--ckpt_path", str(tmp_path / "old.ckpt"), "--source", str(tmp_path)]) == 2
    assert "has no evaluation preprocessing" in capsys.readouterr().err
    torch.save({"w": torch.zeros(1)}, tmp_path / "plain.pth")
    with pytest.raises(UserInputError, match="not a Lightning checkpoint"):
        load_model(tmp_path / "plain.pth")
    with pytest.raises(MissingFileError, match="nope.ckpt"):
        load_model(tmp_path / "nope.ckpt")


def test_predict_help_documents_source(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    out = capsys.readouterr().out
    assert "--source PATH|DIR|GLOB" in out and "--ckpt_path" in out and "--config" in out


def test_detectors_needing_proposals_are_refused_with_what_to_do() -> None:
    from visiontasks.predictor import Predictor
    from visiontasks.preprocessing import Preprocessing
    from visiontasks.tasks import DetectionTask

    task = DetectionTask(model="fast_rcnn", backbone="resnet18", num_classes=2,
                         model_kwargs={"representation_size": 16})
    task.preprocessing = Preprocessing("letterbox", (64, 64))
    with pytest.raises(InvalidInputError, match=r"'fast_rcnn' needs region proposals.*--config"):
        Predictor(task, "cpu")


def test_load_model_is_a_lazy_top_level_name() -> None:
    code = ("import json, sys, visiontasks\nlight = 'torch' not in sys.modules\n"
            "print(json.dumps([light, visiontasks.load_model.__module__, 'load_model' in dir(visiontasks)]))")
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [True, "visiontasks.predictor", True]
