"""``visiontasks export``: every task family in every format it supports, run by onnxruntime (CPU),
``torch.jit.load`` and ``torch.export.load``, against the PyTorch task on the same image.

The reference is the task itself on the image normalised by the data pipeline's own albumentations
``Normalize`` (so the normalisation inside the exported graph is checked too). Tolerances: logits and
probabilities atol 1e-4; segmentation masks equal wherever the two best classes differ by more than
1e-3; detections matched one to one (same label, IoU > 0.999), scores atol 1e-4, boxes atol 1e-3 px,
instance-mask probabilities atol 1e-3 (their pixels >= 0.5 equal wherever the probability is not
within 1e-3 of 0.5). Each model comes from a one-step fit on tiny synthetic data (the detectors on
precomputed proposals, refused by the exporter, from an unfitted checkpoint).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import albumentations as A
import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from visiontasks import load_model
from visiontasks.cli import main as cli_main
from visiontasks.data import ClassificationDataModule, DetectionDataModule, SegmentationDataModule
from visiontasks.errors import InvalidInputError
from visiontasks.export import FORMATS, export_checkpoint, load_exported, load_task, spec_path
from visiontasks.heads import list_detectors
from visiontasks.heads.detector import DETECTORS, ExportSupport, detector_settings
from visiontasks.preprocessing import Preprocessing
from visiontasks.tasks import (
    ClassificationTask, DetectionTask, InstanceSegmentationTask, KeypointDetectionTask, SegmentationTask,
)

pytest.importorskip("onnxruntime")

# torch.export takes 10-40 s per model on a busy 2-core machine; the other formats a few seconds
ALL_FORMATS = ["onnx", "torchscript", pytest.param("torch_export", marks=pytest.mark.slow)]
ATOL = 1e-4
BOX_ATOL = 1e-3


def _fit(task: pl.LightningModule, data: pl.LightningDataModule, path: Path) -> Path:
    torch.manual_seed(0)
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
                         default_root_dir=str(path.parent))
    trainer.fit(task, datamodule=data)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def classifier_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cls")
    data = ClassificationDataModule(source="synthetic", root=str(root / "data"), image_size=32, batch_size=8,
                                    synthetic_classes=3, synthetic_per_class=12)
    return _fit(ClassificationTask(backbone="resnet18", num_classes=3), data, root / "cls.ckpt")


@pytest.fixture(scope="module")
def fcn_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("seg")
    data = SegmentationDataModule(root=str(root / "data"), format="synthetic", synthetic={"counts": (4, 2, 2),
                                  "image_size": 48, "num_shapes": 2}, crop_size=48, batch_size=4)
    task = SegmentationTask("fcn8s", "resnet18", num_classes=3, fc_channels=16, fc_kernel_size=1, dropout=0.0)
    return _fit(task, data, root / "seg.ckpt")


TINY_DETECTORS = {
    "faster_rcnn": dict(fpn=True, fpn_channels=32, representation_size=32, rpn_pre_nms_top_n_test=100,
                        rpn_post_nms_top_n_test=50, rpn_batch_size_per_image=32, box_batch_size_per_image=16),
    "yolov1": dict(feature="layer2", grid_size=8, hidden_channels=16, representation_size=32, score_thresh=0.0),
    "ssd": dict(score_thresh=0.0),
}


@pytest.fixture(scope="module")
def detector_ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("det")
    out = {}
    for name, kwargs in TINY_DETECTORS.items():
        data = DetectionDataModule(format="coco", root=str(root / "data"), image_size=64, batch_size=2, augment=False,
                                   synthetic={"splits": {"train": 4, "val": 2}, "image_size": 64, "num_classes": 2,
                                              "seed": 3})
        task = DetectionTask(model=name, backbone="resnet18", num_classes=2, model_kwargs=kwargs)
        out[name] = _fit(task, data, root / f"{name}.ckpt")
    return out


TINY_MASK_RCNN = dict(TINY_DETECTORS["faster_rcnn"], mask_layers=[16, 16], mask_predictor_channels=16)


@pytest.fixture(scope="module")
def mask_rcnn_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An instance-segmentation checkpoint (``InstanceSegmentationTask``, whose predictions carry masks)."""
    root = tmp_path_factory.mktemp("mask")
    data = DetectionDataModule(format="coco", root=str(root / "data"), image_size=64, batch_size=2, augment=False,
                               masks=True, synthetic={"splits": {"train": 4, "val": 2}, "image_size": 64,
                                                      "num_classes": 2, "seed": 3})
    task = InstanceSegmentationTask(model="mask_rcnn", backbone="resnet18", num_classes=2, model_kwargs=TINY_MASK_RCNN)
    return _fit(task, data, root / "mask_rcnn.ckpt")


def _unfitted_ckpt(name: str, path: Path) -> Path:
    """A checkpoint of ``DetectionTask(model=name)`` as Lightning writes one (letterbox 64 preprocessing,
    class names), without a fit: for detectors the synthetic data cannot train without proposals."""
    small = {"representation_size": 16}
    accepted = detector_settings(name)
    kwargs = {k: v for k, v in small.items() if accepted is None or k in accepted}
    task = DetectionTask(model=name, backbone="resnet18", num_classes=2, model_kwargs=kwargs)
    task.preprocessing, task.class_names = Preprocessing("letterbox", (64, 64)), ["a", "b"]
    ckpt = {"state_dict": task.state_dict(), "pytorch-lightning_version": pl.__version__,
            "hyper_parameters": dict(task.hparams)}
    task.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    return path


def _images(n: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    """``uint8 [n, h, w, 3]`` smooth random images (not noise: detectors find things in them)."""
    g = torch.Generator().manual_seed(seed)
    small = torch.randint(0, 256, (n, 3, max(h // 8, 1), max(w // 8, 1)), generator=g).float()
    big = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return big.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _normalised(task: Any, images: torch.Tensor) -> torch.Tensor:
    """The data pipeline's normalisation (albumentations) of ``uint8 [N, H, W, C]`` -> ``[N, C, H, W]``."""
    prep = task.preprocessing
    norm = A.Normalize(mean=prep.mean, std=prep.std, max_pixel_value=255.0)
    return torch.stack([torch.from_numpy(norm(image=im.numpy())["image"]).permute(2, 0, 1) for im in images])


def _export_and_load(ckpt: Path, fmt: str, tmp_path: Path, **kw: Any) -> tuple[Any, dict[str, Any]]:
    done = export_checkpoint(ckpt, fmt, tmp_path / f"model.{fmt}", **kw)
    spec = json.loads(spec_path(done.path).read_text())
    return load_exported(done.path, fmt), spec


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_classifier(classifier_ckpt: Path, fmt: str, tmp_path: Path) -> None:
    run, spec = _export_and_load(classifier_ckpt, fmt, tmp_path)
    task, _ = load_task(classifier_ckpt)
    images = _images(3, 32, 32)  # a batch of 3: the export was traced with 2
    logits, probs = run(images)
    with torch.no_grad():
        expected = task(_normalised(task, images))
    torch.testing.assert_close(logits, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(probs, expected.softmax(1), atol=ATOL, rtol=0)
    assert spec["task"] == "classification" and spec["class_names"] == task.class_names
    assert spec["input"] == {"name": "image", "dtype": "uint8", "layout": "NHWC", "channels": "RGB",
                             "shape": ["N", 32, 32, 3], "size": [32, 32], "dynamic_size": False, "batch": "any"}
    assert spec["preprocessing"]["resize"] == "stretch" and spec["format"] == fmt
    assert [o["name"] for o in spec["outputs"]] == ["logits", "probs"]
    assert (spec["opset"] == 17) == (fmt == "onnx")


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_fcn_takes_any_size(fcn_ckpt: Path, fmt: str, tmp_path: Path) -> None:
    run, spec = _export_and_load(fcn_ckpt, fmt, tmp_path)  # resize none: dynamic by default
    assert spec["input"]["dynamic_size"] and spec["input"]["shape"] == ["N", "H", "W", 3]
    task, _ = load_task(fcn_ckpt)
    for h, w in ((40, 56), (72, 48)):
        images = _images(2, h, w)
        logits, mask = run(images)
        with torch.no_grad():
            expected = task(_normalised(task, images))
        torch.testing.assert_close(logits, expected, atol=ATOL, rtol=0)
        top2 = expected.topk(2, dim=1).values
        clear = (top2[:, 0] - top2[:, 1]) > 1e-3
        assert mask.shape == (2, h, w) and torch.equal(mask[clear], expected.argmax(1)[clear])


def _assert_same_detections(got: tuple[torch.Tensor, ...], expected: dict[str, torch.Tensor]) -> torch.Tensor:
    """Boxes, scores, labels (the first three outputs) match ``expected`` one to one; returns, for
    each expected detection, the index of its exported one."""
    boxes, scores, labels = got[:3]
    assert len(boxes) == len(expected["boxes"]) > 0
    same = (box_iou(expected["boxes"].float(), boxes) > 0.999) & (expected["labels"][:, None] == labels[None])
    assert bool((same.sum(1) >= 1).all())
    match = same.float().argmax(1)
    torch.testing.assert_close(boxes[match], expected["boxes"].float(), atol=BOX_ATOL, rtol=0)
    torch.testing.assert_close(scores[match], expected["scores"].float(), atol=ATOL, rtol=0)
    return match


def _detect(task: Any, image: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return task.detector(list(_normalised(task, image[None])), None)[0]  # Detector.forward pads


@pytest.mark.slow  # 35-55 s: two exports, and TorchScript optimises again for each new size
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_faster_rcnn(detector_ckpts: dict[str, Path], fmt: str, tmp_path: Path) -> None:
    ckpt = detector_ckpts["faster_rcnn"]
    task, _ = load_task(ckpt)
    run, spec = _export_and_load(ckpt, fmt, tmp_path)  # letterbox 64: one size
    assert spec["input"]["shape"] == [1, 64, 64, 3] and spec["preprocessing"]["resize"] == "letterbox"
    image = _images(1, 64, 64)[0]
    _assert_same_detections(run(image[None]), _detect(task, image))
    run, spec = _export_and_load(ckpt, fmt, tmp_path, dynamic=True)
    assert spec["input"]["shape"] == [1, "H", "W", 3]
    for h, w in ((64, 64), (50, 90)):  # 50 x 90 is padded to 64 x 96 inside, boxes clipped to 50 x 90
        image = _images(1, h, w, seed=h)[0]
        _assert_same_detections(run(image[None]), _detect(task, image))


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_ssd_at_its_training_size(detector_ckpts: dict[str, Path], fmt: str, tmp_path: Path) -> None:
    ckpt = detector_ckpts["ssd"]
    task, _ = load_task(ckpt)
    run, spec = _export_and_load(ckpt, fmt, tmp_path)  # letterbox 64: the default boxes are fixed
    assert spec["input"]["shape"] == [1, 64, 64, 3]
    image = _images(1, 64, 64)[0]
    _assert_same_detections(run(image[None]), _detect(task, image))


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_yolov1(detector_ckpts: dict[str, Path], fmt: str, tmp_path: Path) -> None:
    ckpt = detector_ckpts["yolov1"]
    task, _ = load_task(ckpt)
    run, spec = _export_and_load(ckpt, fmt, tmp_path)
    image = _images(1, 64, 64)[0]
    _assert_same_detections(run(image[None]), _detect(task, image))
    assert [o["name"] for o in spec["outputs"]] == ["boxes", "scores", "labels"]


@pytest.mark.parametrize("fmt, dynamic", [("onnx", False), ("torchscript", False),
                                          pytest.param("onnx", True, marks=pytest.mark.slow)])
def test_mask_rcnn_exports_its_masks(mask_rcnn_ckpt: Path, fmt: str, dynamic: bool, tmp_path: Path) -> None:
    """Boxes, scores, labels and masks of the exported file equal ``load_model(ckpt).predict`` on the
    same image (at the exported size, so input pixels are file pixels) and the eager detector's
    mask probabilities; the JSON describes the masks."""
    ckpt = mask_rcnn_ckpt
    task, _ = load_task(ckpt)
    run, spec = _export_and_load(ckpt, fmt, tmp_path, dynamic=dynamic)
    names = [o["name"] for o in spec["outputs"]]
    assert names == ["boxes", "scores", "labels", "masks"]
    masks_spec = spec["outputs"][3]
    assert masks_spec["shape"] == ["D", "H", "W"] and masks_spec["dtype"] == "float32"
    assert any(step.startswith("masks back to file pixels") for step in spec["caller_steps"])
    image = _images(1, 64, 64)[0]
    with torch.no_grad():  # a TorchScript module's outputs would need grad; predict's are inference tensors
        got = run(image[None])
    assert got[3].dtype == torch.float32 and tuple(got[3].shape) == (len(got[0]), 64, 64)
    eager = _detect(task, image)
    match = _assert_same_detections(got, eager)
    torch.testing.assert_close(got[3][match], eager["masks"], atol=BOX_ATOL, rtol=0)
    result = load_model(ckpt, "cpu").predict(image.numpy())[0]  # what a user of the checkpoint gets
    assert result.masks is not None and result.masks.shape == (len(got[0]), 64, 64)
    match = _assert_same_detections(got, {"boxes": result.boxes, "scores": result.scores, "labels": result.labels})
    exported = got[3][match] >= 0.5
    clear = (got[3][match] - 0.5).abs() > BOX_ATOL
    assert torch.equal(exported[clear], result.masks[clear])
    union = (exported | result.masks).flatten(1).sum(1)
    assert bool((union > 0).any())  # the comparison has object pixels in it
    iou = (exported & result.masks).flatten(1).sum(1)[union > 0] / union[union > 0]
    assert float(iou.min()) > 0.99
    if dynamic:  # a size the trace did not see, padded inside to 64 x 96; masks cropped to 50 x 90
        image = _images(1, 50, 90, seed=50)[0]
        with torch.no_grad():
            got = run(image[None])
        eager = _detect(task, image)
        match = _assert_same_detections(got, eager)
        assert tuple(got[3].shape) == (len(got[0]), 50, 90)
        torch.testing.assert_close(got[3][match], eager["masks"], atol=BOX_ATOL, rtol=0)


@pytest.fixture(scope="module")
def every_detector_ckpt(detector_ckpts: dict[str, Path], mask_rcnn_ckpt: Path,
                        tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A checkpoint of every registered detector: the fitted ones above, an unfitted one for the rest."""
    root = tmp_path_factory.mktemp("every")
    found = {**detector_ckpts, "mask_rcnn": mask_rcnn_ckpt}
    return {name: found.get(name) or _unfitted_ckpt(name, root / f"{name}.ckpt") for name in list_detectors()}


def _every_detector_and_format() -> list[Any]:
    """``(name, fmt)`` for every registered detector and every format; slow where torch.export runs
    (a format the detector declares: 10-40 s), not where it is refused (at once)."""
    params = []
    for name in list_detectors():
        support = getattr(DETECTORS[name], "export_support", ExportSupport())
        for fmt in FORMATS:
            slow = fmt == "torch_export" and fmt in support.formats
            params.append(pytest.param(name, fmt, id=f"{name}-{fmt}", marks=[pytest.mark.slow] if slow else []))
    return params


@pytest.mark.parametrize("name, fmt", _every_detector_and_format())
def test_every_detector_exports_all_it_predicts_or_refuses(every_detector_ckpt: dict[str, Path], name: str, fmt: str,
                                                           tmp_path: Path) -> None:
    """Each registered detector, in each format, either exports and the file returns every output
    the eager detector returns (``Detector.forward`` on the same image: boxes, scores, labels, and
    masks for mask_rcnn), with the same values, or is refused with one line naming the detector
    and the format, writing no file. Nothing is dropped silently."""
    ckpt = every_detector_ckpt[name]
    task, _ = load_task(ckpt)
    support = task.detector.export_support
    path = tmp_path / f"{name}.{fmt}"
    if fmt not in support.formats:
        with pytest.raises(InvalidInputError) as err:
            export_checkpoint(ckpt, fmt, path)
        message = str(err.value)
        assert len(message.splitlines()) == 1 and repr(name) in message and fmt in message
        assert not path.exists()
        return
    done = export_checkpoint(ckpt, fmt, path)
    outputs = [o["name"] for o in done.spec["outputs"]]
    image = _images(1, 64, 64)[0]
    eager = _detect(task, image)
    assert set(outputs) == set(eager), f"{name} returns {sorted(eager)} but its {fmt} file has {outputs}"
    with torch.no_grad():
        got = dict(zip(outputs, load_exported(done.path, fmt)(image[None])))
    assert len(got) == len(outputs)
    assert all(len(t) == len(got["boxes"]) for t in got.values())  # one row per detection
    if len(eager["boxes"]) == 0:  # an unfitted detector may find nothing: then neither may the file
        assert len(got["boxes"]) == 0
        return
    match = _assert_same_detections((got["boxes"], got["scores"], got["labels"]), eager)
    for key in set(eager) - {"boxes", "scores", "labels"}:  # masks, or whatever a detector adds
        assert tuple(got[key].shape[1:]) == tuple(eager[key].shape[1:]), key
        torch.testing.assert_close(got[key][match].float(), eager[key].float(), atol=BOX_ATOL, rtol=0)


def test_unsupported_combinations_are_one_line_errors(detector_ckpts: dict[str, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InvalidInputError, match="faster_rcnn.*torch_export.*torch.export cannot trace"):
        export_checkpoint(detector_ckpts["faster_rcnn"], "torch_export", tmp_path / "f.pt2")
    with pytest.raises(InvalidInputError, match="yolov1.*dynamic input size"):
        export_checkpoint(detector_ckpts["yolov1"], "onnx", tmp_path / "y.onnx", dynamic=True)
    assert cli_main(["export", "--ckpt_path", str(detector_ckpts["faster_rcnn"]), "--format", "torch_export",
                     "--output", str(tmp_path / "f.pt2")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot be exported to torch_export" in err
    assert not (tmp_path / "f.pt2").exists()


@pytest.mark.parametrize("model", ["fast_rcnn", "rcnn"])
def test_proposal_detectors_are_refused(model: str, tmp_path: Path) -> None:
    task = DetectionTask(model=model, backbone="resnet18", num_classes=2, model_kwargs={"representation_size": 16})
    path = tmp_path / f"{model}.ckpt"  # a checkpoint as Lightning writes it, without a fit
    torch.save({"state_dict": task.state_dict(), "pytorch-lightning_version": pl.__version__,
                "hyper_parameters": dict(task.hparams)}, path)
    with pytest.raises(InvalidInputError, match="selective-search proposals"):
        export_checkpoint(path, "onnx", tmp_path / "m.onnx")


def test_missing_and_non_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["export", "--ckpt_path", str(tmp_path / "nope.ckpt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    assert cli_main(["export", "--ckpt_path", str(text)]) == 2
    assert "is not a Lightning checkpoint" in capsys.readouterr().err


def test_cli_writes_the_file_and_its_json(classifier_ckpt: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "clf.onnx"
    assert cli_main(["export", "--ckpt_path", str(classifier_ckpt), "--output", str(out)]) == 0
    assert out.is_file() and (tmp_path / "clf.onnx.json").is_file()
    assert "clf.onnx" in capsys.readouterr().out
    import onnxruntime as ort

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    logits, probs = session.run(None, {"image": np.zeros((1, 32, 32, 3), np.uint8)})
    assert logits.shape == (1, 3) and np.allclose(probs.sum(1), 1.0, atol=1e-5)


def test_cli_exports_mask_rcnn_with_its_masks(mask_rcnn_ckpt: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """``visiontasks export`` (cli.main) of a fitted instance-segmentation checkpoint writes an ONNX
    file whose fourth output is the masks, equal to the eager detector's, and says so."""
    out = tmp_path / "mask.onnx"
    assert cli_main(["export", "--ckpt_path", str(mask_rcnn_ckpt), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mask.onnx" in printed and "masks ['D', 'H', 'W']" in printed
    spec = json.loads((tmp_path / "mask.onnx.json").read_text())
    assert [o["name"] for o in spec["outputs"]] == ["boxes", "scores", "labels", "masks"]
    import onnxruntime as ort

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["boxes", "scores", "labels", "masks"]
    image = _images(1, 64, 64)[0]
    got = tuple(torch.from_numpy(a) for a in session.run(None, {"image": image[None].numpy()}))
    assert got[3].shape == (len(got[0]), 64, 64)
    task, _ = load_task(mask_rcnn_ckpt)
    eager = _detect(task, image)
    match = _assert_same_detections(got, eager)
    torch.testing.assert_close(got[3][match], eager["masks"], atol=BOX_ATOL, rtol=0)


def test_a_new_detector_joins_by_its_declaration(tmp_path: Path) -> None:
    """What SSD or Mask R-CNN need: ``export_support`` on the class, ``detect`` per image; nothing in
    the exporter names them. Here a toy detector with an extra output exports to ONNX and runs."""
    from visiontasks.export.exporter import EXPORTERS, check_export
    from visiontasks.export.wrappers import DetectorExport
    from visiontasks.heads.detector import Detector, ExportSupport

    class Toy(Detector):
        export_support = ExportSupport(formats=("onnx",), dynamic_size=True,
                                       outputs=("boxes", "scores", "labels", "masks"))

        def __init__(self) -> None:
            super().__init__()
            self.num_classes, self.size_divisible = 2, 16
            self.conv = torch.nn.Conv2d(3, 1, 3, padding=1)

        def detect(self, batch: torch.Tensor, sizes: list, proposals: Any) -> list[dict[str, torch.Tensor]]:
            heat = self.conv(batch).sigmoid()[:, :, : sizes[0][0], : sizes[0][1]]  # [1, 1, h, w]
            keep = torch.nonzero(heat.flatten() > 0.5).flatten()[:5]
            ys, xs = keep // heat.shape[-1], keep % heat.shape[-1]
            boxes = torch.stack([xs, ys, xs + 1, ys + 1], 1).float()
            return [{"boxes": boxes, "scores": heat.flatten()[keep], "labels": torch.zeros_like(keep),
                     "masks": heat.expand(len(keep), 1, -1, -1)}]

    torch.manual_seed(0)
    module = DetectorExport(Toy().eval(), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), dynamic=True).eval()
    assert module.output_names == ("boxes", "scores", "labels", "masks")
    path = tmp_path / "toy.onnx"
    with torch.no_grad():
        EXPORTERS["onnx"](module, _images(1, 40, 56), path, list(module.output_names), False, True, 17)
        for h, w in ((40, 56), (33, 70)):  # padded to 48 x 64 and 48 x 80 inside, cropped back
            check_export(module, _images(1, h, w, seed=h), path, "onnx", atol=ATOL)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_keypoint_rcnn_exports_its_keypoints(fmt: str, tmp_path: Path) -> None:
    """An unfitted Keypoint R-CNN with ``score_thresh: 0`` (so it detects): the file's fourth output
    is the keypoints ``[D, P, 3]``, equal to the eager detector's (x, y within the box tolerance, the
    keypoint score too); the JSON describes them and says how to map them to file pixels."""
    torch.manual_seed(0)
    kwargs = dict(TINY_DETECTORS["faster_rcnn"], keypoint_layers=[16, 16], num_keypoints=5, score_thresh=0.0,
                  detections_per_img=10)
    task = KeypointDetectionTask(backbone="resnet18", num_classes=2, num_keypoints=5, model_kwargs=kwargs)
    task.preprocessing, task.class_names = Preprocessing("letterbox", (64, 64)), ["a", "b"]
    ckpt = {"state_dict": task.state_dict(), "pytorch-lightning_version": pl.__version__,
            "hyper_parameters": dict(task.hparams)}
    task.on_save_checkpoint(ckpt)
    torch.save(ckpt, tmp_path / "kp.ckpt")
    loaded, _ = load_task(tmp_path / "kp.ckpt")
    run, spec = _export_and_load(tmp_path / "kp.ckpt", fmt, tmp_path)
    assert [o["name"] for o in spec["outputs"]] == ["boxes", "scores", "labels", "keypoints"]
    assert spec["outputs"][3]["shape"] == ["D", "P", 3]
    assert any(step.startswith("keypoints back to file pixels") for step in spec["caller_steps"])
    image = _images(1, 64, 64)[0]
    eager = _detect(loaded, image)
    got = run(image[None])
    match = _assert_same_detections(got, eager)
    assert got[3].shape[1:] == (5, 3)
    torch.testing.assert_close(got[3][match][..., :2], eager["keypoints"][..., :2], atol=BOX_ATOL, rtol=0)
    torch.testing.assert_close(got[3][match][..., 2], eager["keypoints"][..., 2], atol=ATOL, rtol=0)
