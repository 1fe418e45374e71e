"""Every shipped detection and segmentation config survives a change of ``backbone:`` alone.

For each fit config in ``configs/detection`` and ``configs/segmentation`` the backbone is swapped for
another family (ResNet -> MobileNet v2, VGG / MobileNet / others -> ResNet-18) on the command line:

* configs whose data is generated offline (the synthetic shapes sets: ``synthetic:`` or
  ``format: synthetic``) run ``visiontasks fit --trainer.fast_dev_run true`` through the CLI's entry
  point (``visiontasks.cli.main``) on a tiny copy of their data (64 px, 2 images a split, batch 2);
* the recipes on data that cannot be generated here (COCO, VOC, COCO128, your own folders) are
  validated whole by the same entry point (``--print_config``, backbone weights off: no network), and
  their model section is instantiated as LightningCLI does and run once on a 64 px input.

The benchmark configs (``generations_*.yaml``) hold no model: they name fit configs, tested here.
Also here: the stride options themselves (``feature_stride``, ``feature_strides``) and their errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from lightning.pytorch.cli import LightningArgumentParser

from visiontasks.backbones import build_backbone
from visiontasks.cli import main as cli_main
from visiontasks.errors import InvalidInputError
from visiontasks.heads.detector import build_detector
from visiontasks.tasks import BaseTask

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted((ROOT / "configs" / "detection").glob("*.yaml")) + sorted((ROOT / "configs" / "segmentation").glob("*.yaml"))


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


FIT_CONFIGS = [p for p in FILES if "model" in _load(p)]
SIZE = 64
# seconds each here: the VOC recipes' fully connected layers hold 100-200 M parameters, the R-CNN
# SVM stage repeats rcnn_resnet18_shapes' model, and the FPN Mask R-CNN is mask_rcnn_resnet18_coco128's
SLOW = {"yolov1_vgg16_voc", "fcn8s_vgg16_voc", "rcnn_resnet18_shapes_svm", "mask_rcnn_resnet50_fpn_coco"}


def swapped(backbone: str) -> str:
    """A backbone of another family: ResNet -> MobileNet v2, anything else -> ResNet-18."""
    return "mobilenet_v2" if backbone.startswith("resnet") else "resnet18"


def _family(name: str) -> str:
    return name.rstrip("0123456789_bnv").split("_")[0]


def _generated(cfg: dict[str, Any]) -> bool:
    """Whether the config's data is written here on first use (the synthetic shapes sets)."""
    data = cfg["data"]["init_args"]
    return "synthetic" in data or data.get("format") == "synthetic"


def _params(generated: bool) -> list[Any]:
    return [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.stem in SLOW else [])
            for p in FIT_CONFIGS if _generated(_load(p)) == generated]


def test_every_config_file_is_covered() -> None:
    """A config without a model is a benchmark whose detectors are fit configs tested here; every fit
    config changes backbone family."""
    assert len(FIT_CONFIGS) >= 15 and SLOW <= {p.stem for p in FIT_CONFIGS}
    for path in set(FILES) - set(FIT_CONFIGS):
        named = {ROOT / d["config"] for d in _load(path)["detectors"].values()}
        assert named <= set(FIT_CONFIGS), path.name
    for path in FIT_CONFIGS:
        backbone = _load(path)["model"]["init_args"]["backbone"]
        assert _family(swapped(backbone)) != _family(backbone), path.name


def _tiny(cfg: dict[str, Any], data_root: Path) -> dict[str, Any]:
    """The config on a tiny copy of its synthetic data (shared between configs of one layout)."""
    data = cfg["data"]["init_args"]
    data.update(root=str(data_root / Path(data["root"]).name), batch_size=2, num_workers=0)
    if "counts" in data["synthetic"]:  # segmentation
        data["synthetic"].update(counts=[2, 2, 2], image_size=SIZE)
        data.update(crop_size=SIZE, eval_batch_size=2)
    else:  # detection
        data.update(image_size=SIZE)
        data["synthetic"].update(splits={"train": 2, "val": 2}, image_size=SIZE)
    kwargs = cfg["model"]["init_args"].get("model_kwargs") or {}
    if kwargs.get("init_weights"):
        kwargs["init_weights"] = None  # stage 1's checkpoint (of the old backbone) is not here
    return cfg


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("swap_data")


@pytest.mark.parametrize("path", _params(generated=True))
def test_fast_dev_run_with_another_backbone(path: Path, data_root: Path, tmp_path: Path) -> None:
    cfg = _tiny(_load(path), data_root)
    config = tmp_path / path.name
    config.write_text(yaml.safe_dump(cfg))
    backbone = swapped(cfg["model"]["init_args"]["backbone"])
    code = cli_main(["fit", "--config", str(config), "--model.init_args.backbone", backbone,
                     "--trainer.fast_dev_run", "true", "--trainer.accelerator", "cpu",
                     "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path / "runs")])
    assert code == 0


def _instantiate_model(section: dict[str, Any]) -> BaseTask:
    """The model section instantiated as LightningCLI does (``num_classes`` stands in for the link
    from the data, which is not here)."""
    parser = LightningArgumentParser(exit_on_error=False)
    parser.add_lightning_class_args(BaseTask, "model", subclass_mode=True)
    section["init_args"]["num_classes"] = 3
    return parser.instantiate_classes(parser.parse_object({"model": section})).model


@pytest.mark.parametrize("path", _params(generated=False))
def test_recipe_builds_with_another_backbone(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    backbone = swapped(_load(path)["model"]["init_args"]["backbone"])
    args = ["fit", "--config", str(path), "--model.init_args.backbone", backbone,
            "--model.init_args.backbone_weights", "null", "--print_config"]
    with pytest.raises(SystemExit) as stop:
        cli_main(args)
    assert stop.value.code in (0, None), capsys.readouterr().err
    section = yaml.safe_load(capsys.readouterr().out)["model"]
    assert section["init_args"]["backbone"] == backbone
    model = _instantiate_model(section).eval()
    with torch.no_grad():
        if hasattr(model, "detector"):
            out = model([torch.rand(3, SIZE, SIZE)])
            assert {"boxes", "scores", "labels"} <= set(out[0])
        else:
            assert model(torch.rand(1, 3, SIZE, SIZE)).shape == (1, 3, SIZE, SIZE)


# -- the stride options -------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone, name", [("resnet18", "layer2"), ("mobilenet_v2", "stage3"), ("vgg11", "stage3")])
def test_feature_stride_picks_the_same_level_on_every_family(backbone: str, name: str) -> None:
    body = build_backbone(backbone)
    assert build_detector("faster_rcnn", body, 3, feature_stride=8).feature_names == [name]
    assert build_detector("fast_rcnn", body, 3, feature_stride=8, representation_size=16).feature_name == name
    yolo = build_detector("yolov1", body, 3, feature_stride=8, head="conv", grid_size=4, hidden_channels=8)
    assert yolo.feature_name == name
    ssd = build_detector("ssd", body, 3, feature_strides=[32, 8, 16], vgg_fc=False, image_size=SIZE)
    assert ssd.source_names[0] == name and len(ssd.source_names) == 3


def test_a_missing_stride_is_one_line_listing_the_strides() -> None:
    body = build_backbone("mobilenet_v2")
    with pytest.raises(InvalidInputError) as err:
        build_detector("yolov1", body, 3, feature_stride=64)
    text = str(err.value)
    assert "\n" not in text and text.startswith("feature_stride=64:")
    assert "2 (stage1), 4 (stage2), 8 (stage3), 16 (stage4), 32 (stage5)" in text
    with pytest.raises(InvalidInputError, match=r"^feature_strides=\[8, 64\]: .* no output at stride 64;"):
        build_detector("ssd", body, 3, feature_strides=[8, 64])
    with pytest.raises(InvalidInputError, match="give one of them"):
        build_detector("faster_rcnn", body, 3, feature="stage3", feature_stride=8)
    with pytest.raises(InvalidInputError, match="feature='layer2'.*feature_stride"):  # a ResNet name on MobileNet
        build_detector("faster_rcnn", body, 3, feature="layer2")


def test_a_missing_stride_through_the_cli_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _tiny(_load(ROOT / "configs/detection/yolov1_resnet18_shapes.yaml"), tmp_path)
    config = tmp_path / "yolo.yaml"
    config.write_text(yaml.safe_dump(cfg))
    code = cli_main(["fit", "--config", str(config), "--model.init_args.backbone", "alexnet",
                     "--model.init_args.model_kwargs", "{feature_stride: 2}", "--trainer.fast_dev_run", "true"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("visiontasks fit: error: feature_stride=2: the backbone has no output at stride 2")
    assert "\n" not in err
