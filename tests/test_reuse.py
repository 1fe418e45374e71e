"""Weights flow between tasks: a checkpoint of any task seeds another task's backbone, and
``visiontasks export-backbone`` writes it in torchvision's layout.

Tiny synthetic batches, two training steps at most: the checks are about which tensors land where.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import DataLoader
from torchvision.models.feature_extraction import create_feature_extractor

from visiontasks.backbones import Backbone, build_backbone, build_classifier, get_spec, list_backbones
from visiontasks.backbones._transfer import canonical_keys
from visiontasks.cli import main
from visiontasks.errors import InvalidInputError
from visiontasks.tasks import ClassificationTask, DetectionTask, SegmentationTask

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "configs/classification/lenet5_digits.yaml")
SMALL_FASTER_RCNN = dict(anchor_sizes=(16, 32), representation_size=16, rpn_pre_nms_top_n_train=50,
                         rpn_post_nms_top_n_train=20, rpn_pre_nms_top_n_test=20, rpn_post_nms_top_n_test=10,
                         rpn_batch_size_per_image=16, box_batch_size_per_image=8)


def _trainer(steps: int, callbacks: list[Callback] | None = None) -> Trainer:
    return Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                   callbacks=callbacks or [], num_sanity_val_steps=0)


def _classification_batches(in_chans: int = 3, size: int = 32) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    data = [{"image": torch.randn(in_chans, size, size, generator=g), "label": i % 3, "id": str(i)} for i in range(8)]
    return DataLoader(data, batch_size=4)


def _fit_and_save(task: LightningModule, path: Path, loader: Any, steps: int = 2) -> Path:
    trainer = _trainer(steps)
    trainer.fit(task, loader)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[ClassificationTask, Path]:
    """A ResNet-18 ClassificationTask trained two steps (weights and BatchNorm statistics moved away
    from their initialisation) and its checkpoint."""
    torch.manual_seed(0)
    task = ClassificationTask(backbone="resnet18", num_classes=3)
    path = _fit_and_save(task, tmp_path_factory.mktemp("clf") / "clf.ckpt", _classification_batches())
    return task.eval(), path


def _features(backbone: Backbone, x: torch.Tensor) -> dict[str, torch.Tensor]:
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        out = backbone(x)
    backbone.train(was_training)
    return out


class FirstStepFeatures(Callback):
    """Records the backbone's features (eval mode) of a fixed input before the first training step."""

    def __init__(self, get_backbone: Any, x: torch.Tensor) -> None:
        self.get_backbone, self.x, self.features = get_backbone, x, None

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self.features is None:
            self.features = _features(self.get_backbone(pl_module), self.x)


def _assert_same_features(found: dict[str, torch.Tensor], reference: dict[str, torch.Tensor],
                          exact: bool = True) -> None:
    """Same names and values (bit for bit when ``exact``: the same weights run the same ops)."""
    assert found
    for name, value in found.items():
        torch.testing.assert_close(value, reference[name], **({"rtol": 0, "atol": 0} if exact else {}))


def test_classification_checkpoint_seeds_a_detector(classifier: tuple[ClassificationTask, Path]) -> None:
    clf, ckpt = classifier
    task = DetectionTask(model="faster_rcnn", backbone="resnet18", num_classes=2, backbone_weights=str(ckpt),
                         model_kwargs=SMALL_FASTER_RCNN)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    probe = FirstStepFeatures(lambda m: m.detector.backbone, x)
    boxes = torch.tensor([[8.0, 8.0, 40.0, 40.0]])
    batch = ([torch.rand(3, 64, 64), torch.rand(3, 64, 64)],
             [{"boxes": boxes, "labels": torch.tensor([0])}, {"boxes": boxes + 4, "labels": torch.tensor([1])}])
    trainer = _trainer(2, [probe])
    trainer.fit(task, DataLoader([batch, batch], batch_size=None))
    assert trainer.global_step == 2
    _assert_same_features(probe.features, _features(clf.model.backbone, x))


def test_classification_checkpoint_seeds_fcn(classifier: tuple[ClassificationTask, Path]) -> None:
    clf, ckpt = classifier
    task = SegmentationTask(model="fcn8s", backbone="resnet18", num_classes=3, backbone_weights=str(ckpt),
                            fc_channels=8, fc_kernel_size=1)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    probe = FirstStepFeatures(lambda m: m.model.backbone, x)
    g = torch.Generator().manual_seed(3)
    data = [{"image": torch.randn(3, 32, 32, generator=g), "mask": torch.randint(0, 3, (32, 32), generator=g),
             "id": str(i), "size": (32, 32)} for i in range(4)]
    trainer = _trainer(2, [probe])
    trainer.fit(task, DataLoader(data, batch_size=2))
    assert trainer.global_step == 2
    features = probe.features
    assert set(features) == {"stem", "layer1", "layer2", "layer3", "layer4"}
    _assert_same_features(features, _features(clf.model.backbone, x))


def test_export_backbone_loads_into_torchvision(classifier: tuple[ClassificationTask, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    clf, ckpt = classifier
    out = tmp_path / "backbone.pth"
    assert main(["export-backbone", "--ckpt_path", str(ckpt), "--output", str(out)]) == 0
    assert "torchvision's layout" in capsys.readouterr().out
    state = torch.load(out, weights_only=True)
    assert not any(k.startswith("fc.") for k in state)
    tv = torchvision.models.resnet18(weights=None)
    result = tv.load_state_dict(state, strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"] and not result.unexpected_keys
    x = torch.randn(2, 3, 64, 64)
    tv_features = create_feature_extractor(tv.eval(), {"layer2": "layer2", "layer4": "layer4"})(x)
    ours = _features(clf.model.backbone, x)
    for name in ("layer2", "layer4"):
        torch.testing.assert_close(tv_features[name], ours[name])
    # the exported file is also a valid backbone_weights (torchvision layout)
    _assert_same_features(_features(build_backbone("resnet18", str(out)), x), ours)


def test_export_backbone_of_a_family_torchvision_lacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    task = ClassificationTask(backbone="lenet5", num_classes=3, in_chans=1)
    ckpt = _fit_and_save(task, tmp_path / "lenet.ckpt", _classification_batches(in_chans=1), steps=1)
    out = tmp_path / "lenet.pth"
    assert main(["export-backbone", "--ckpt_path", str(ckpt), "--output", str(out)]) == 0
    assert "canonical layout (torchvision has no lenet5)" in capsys.readouterr().out
    x = torch.randn(2, 1, 32, 32)
    _assert_same_features(_features(build_backbone("lenet5", str(out), in_chans=1), x),
                          _features(task.model.backbone, x))


def test_checkpoint_of_another_architecture_is_refused(classifier: tuple[ClassificationTask, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    _, ckpt = classifier
    with pytest.raises(InvalidInputError, match=f"{ckpt} holds a resnet18 backbone, not resnet34"):
        build_backbone("resnet34", str(ckpt))
    with pytest.raises(InvalidInputError, match="holds a resnet18 backbone, not mobilenet_v2"):
        DetectionTask(model="yolov1", backbone="mobilenet_v2", num_classes=2, backbone_weights=str(ckpt))
    # from the command line: one line, exit status 2
    code = main(["fit", "--config", DIGITS, "--model.init_args.backbone_weights", str(ckpt),
                 "--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.max_steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "holds a resnet18 backbone, not lenet5" in err and "Traceback" not in err, err


def test_checkpoint_without_the_backbone_is_refused(tmp_path: Path) -> None:
    """A checkpoint that does not name its backbone and holds other tensors: no resnet18 in it."""
    ckpt = tmp_path / "other.ckpt"
    torch.save({"pytorch-lightning_version": "2.0", "state_dict": {"net.weight": torch.zeros(3)},
                "hyper_parameters": {}}, ckpt)
    with pytest.raises(InvalidInputError, match="holds no resnet18 backbone"):
        build_backbone("resnet18", str(ckpt))


def test_non_checkpoints(tmp_path: Path) -> None:
    notes = tmp_path / "notes.ckpt"
    notes.write_text("hello")
    with pytest.raises(InvalidInputError, match=f"{notes} is not a Lightning checkpoint"):
        build_backbone("resnet18", str(notes))
    # a torchvision-layout state_dict keeps working, as .pth and even when saved as .ckpt
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    expected = create_feature_extractor(tv, {"layer4": "layer4"})(x)
    for name in ("tv.pth", "tv_state.ckpt"):
        torch.save(tv.state_dict(), tmp_path / name)
        _assert_same_features(_features(build_backbone("resnet18", str(tmp_path / name), out_indices=[-1]), x),
                              expected)


def test_classifier_checkpoint_gives_its_head_to_build_classifier(classifier: tuple[ClassificationTask, Path]) -> None:
    """The paper head comes along into build_classifier (same logits); another class count
    re-initialises the last layer with a warning, as for torchvision weights."""
    clf, ckpt = classifier
    x = torch.randn(2, 3, 32, 32)
    same = build_classifier("resnet18", 3, str(ckpt)).eval()
    with torch.no_grad():
        torch.testing.assert_close(same(x), clf(x), rtol=0, atol=0)
    with pytest.warns(UserWarning, match="classifier layer fc re-initialised"):
        other = build_classifier("resnet18", 5, str(ckpt))
    assert other.head[-1].weight.shape == (5, 512)


def test_checkpoint_into_other_input_channels(classifier: tuple[ClassificationTask, Path]) -> None:
    """As for torchvision weights: the first convolution's RGB filters are summed for one channel."""
    clf, ckpt = classifier
    grey = build_backbone("resnet18", str(ckpt), in_chans=1)
    rgb_conv = clf.model.backbone.stages["stem"][0].weight
    torch.testing.assert_close(grey.stages["stem"][0].weight, rgb_conv.sum(1, keepdim=True))
    x = torch.randn(1, 1, 32, 32)
    _assert_same_features(_features(grey, x), _features(clf.model.backbone, x.expand(-1, 3, -1, -1)), exact=False)


def test_partial_backbone_of_a_detection_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A detector keeps only the stages it reads: those load, the deeper ones keep their initialisation
    with a warning, and build_classifier takes the checkpoint too."""
    torch.manual_seed(0)
    det = DetectionTask(model="faster_rcnn", backbone="resnet18", num_classes=2, model_kwargs=SMALL_FASTER_RCNN)
    boxes = torch.tensor([[8.0, 8.0, 40.0, 40.0]])
    batch = ([torch.rand(3, 64, 64)], [{"boxes": boxes, "labels": torch.tensor([0])}])
    ckpt = _fit_and_save(det, tmp_path / "det.ckpt", DataLoader([batch], batch_size=None), steps=1)
    kept = [f.name for f in det.detector.backbone.stage_info]
    assert kept == ["stem", "layer1", "layer2", "layer3"]  # Faster R-CNN without FPN reads layer3
    with pytest.warns(UserWarning, match=r"holds only the stages .* \['layer4'\] keep their initialisation"):
        clf = build_classifier("resnet18", 5, str(ckpt))
    x = torch.randn(1, 3, 64, 64)
    _assert_same_features({k: v for k, v in _features(clf.backbone, x).items() if k in kept},
                          _features(Backbone([(f.name, det.detector.backbone.stages[f.name], f.channels, f.stride)
                                              for f in det.detector.backbone.stage_info]), x))
    # export-backbone writes the stages it has; the file loads as backbone_weights (layer4 warned)
    out = tmp_path / "det_backbone.pth"
    capsys.readouterr()
    assert main(["export-backbone", "--ckpt_path", str(ckpt), "--output", str(out)]) == 0
    assert "holds the stages ['stem', 'layer1', 'layer2', 'layer3'] only" in capsys.readouterr().out
    assert not any(k.startswith("layer4.") for k in torch.load(out, weights_only=True))
    with pytest.warns(UserWarning, match=r"hold no stages \['layer4'\]"):
        again = build_backbone("resnet18", str(out), out_indices=[3])
    _assert_same_features(_features(again, x), _features(det.detector.backbone, x))


def test_googlenet_checkpoint_with_torchvision_input_transform(tmp_path: Path) -> None:
    """A GoogLeNet fine-tuned from torchvision's weights keeps their input re-normalisation as the first
    layer of its stem (stem.1 holds the convolution): that layout is recognised and kept."""
    from visiontasks.backbones import ImageClassifier

    spec = get_spec("googlenet")
    torch.manual_seed(0)
    model = spec.make_model(4)
    model.transform_input = True
    stages, head = spec.split(model)
    net = ImageClassifier(Backbone(stages), head).eval()
    assert "backbone.stages.stem.1.conv.weight" in net.state_dict()
    ckpt = tmp_path / "googlenet.ckpt"
    torch.save({"pytorch-lightning_version": "2.0", "hyper_parameters": {"backbone": "googlenet"},
                "state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}}, ckpt)
    x = torch.randn(1, 3, 64, 64)
    _assert_same_features(_features(build_backbone("googlenet", str(ckpt)), x), _features(net.backbone, x))


@pytest.mark.parametrize("name", list_backbones())
def test_every_backbone_tensor_has_a_canonical_key(name: str) -> None:
    """export-backbone writes the canonical model's keys: every backbone tensor must have one."""
    spec = get_spec(name)
    with torch.device("meta"):  # no memory, no initialisation: only names and tensor identities matter
        model = spec.make_model(10)
    backbone = Backbone(spec.split(model)[0])
    mapping = canonical_keys(model, backbone)
    assert set(mapping) == set(backbone.state_dict())
    assert not any(k.startswith(("fc.", "classifier.")) for k in mapping.values())


def _torchvision_faster_rcnn(num_classes: int, size: int) -> torch.nn.Module:
    """torchvision's Faster R-CNN R50-FPN, random weights, its transform a no-op on normalised
    ``size x size`` images (our data pipeline resizes and normalises)."""
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    torch.manual_seed(0)
    return fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes + 1,
                                   min_size=size, max_size=size, image_mean=[0.0] * 3, image_std=[1.0] * 3).eval()


def test_torchvision_faster_rcnn_state_dict_gives_identical_detections(tmp_path: Path) -> None:
    """torchvision's model (random weights) -> state_dict file -> our faster_rcnn: the same detections.
    Another class count re-initialises the class-specific layers with a warning; another backbone is
    refused."""
    from visiontasks.heads.detector import build_detector

    size, classes = 128, 3
    tv = _torchvision_faster_rcnn(classes, size)
    path = tmp_path / "frcnn.pth"
    torch.save(tv.state_dict(), path)
    ours = build_detector("faster_rcnn", build_backbone("resnet50"), classes, fpn=True, weights=str(path)).eval()
    images = [torch.randn(3, size, size, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    with torch.no_grad():
        expected, found = tv(images), ours(images)
    assert sum(len(d["boxes"]) for d in expected) > 0
    for a, b in zip(found, expected):
        torch.testing.assert_close(a["boxes"], b["boxes"], rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(a["scores"], b["scores"], rtol=1e-4, atol=1e-5)
        assert torch.equal(a["labels"] + 1, b["labels"])  # torchvision's class 0 is the background
    with pytest.warns(UserWarning, match="has 3 classes, the model 5: box_predictor"):
        other = build_detector("faster_rcnn", build_backbone("resnet50"), 5, fpn=True, weights=str(path))
    torch.testing.assert_close(other.roi_heads.box_head.fc6.weight, tv.roi_heads.box_head.fc6.weight)
    assert other.roi_heads.box_predictor.cls_score.out_features == 6
    with pytest.raises(InvalidInputError, match="set backbone: resnet50 and model_kwargs: {fpn: true}"):
        build_detector("faster_rcnn", build_backbone("resnet18"), classes, fpn=True, weights=str(path))
