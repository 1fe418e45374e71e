"""Class activation maps (visiontasks.heads.cam): exact CAM for GAP + linear heads, Grad-CAM for
the others, the maps back in file pixels, ``visiontasks predict --cam`` through the real entry point
and ``load_model(...).predict(..., cam=True)``."""

from __future__ import annotations

import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from visiontasks.backbones import build_classifier
from visiontasks.cli import main
from visiontasks.errors import InvalidInputError, UnknownNameError
from visiontasks.heads.cam import class_activation_maps, class_index, gap_linear, maps_to_input, split_classifier
from visiontasks.ops import map_to_original
from visiontasks.outputs.drawing import CAM_MIN_SIDE
from visiontasks.tasks.facets import enable_cam


def _model(name: str, in_chans: int, head: str = "paper") -> torch.nn.Module:
    from visiontasks.tasks import ClassificationTask

    torch.manual_seed(0)
    return ClassificationTask(name, 5, head, in_chans=in_chans).model.eval()


# -- the maps are right ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name, in_chans, size, head", [
    ("nin_cifar", 1, 28, "paper"), ("resnet18", 3, 64, "paper"), ("mobilenet_v2", 3, 64, "paper"),
    ("vgg11", 3, 64, "linear"),  # any backbone with head: linear is GAP + linear too
])
def test_cam_mean_is_the_logit_minus_its_bias(name: str, in_chans: int, size: int, head: str) -> None:
    model = _model(name, in_chans, head)
    x = torch.randn(3, in_chans, size + 8, size)
    with torch.no_grad():
        found = class_activation_maps(model, x)
        logits = model(x)
    weight, bias = gap_linear(split_classifier(model)[1])
    assert found.method == "cam"
    assert torch.allclose(found.logits, logits)  # the same pass as the model's own
    assert torch.equal(found.classes, logits.argmax(1))
    picked = logits.gather(1, found.classes[:, None])[:, 0]
    torch.testing.assert_close(found.maps.mean(dim=(1, 2)), picked - bias[found.classes], rtol=1e-5, atol=1e-5)
    assert found.maps.shape[1:] != (1, 1) and float(found.maps.flatten(1).std(1).min()) > 0  # a real map
    with torch.no_grad():  # another class by index: its own logit
        other = class_activation_maps(model, x, class_id=2)
    torch.testing.assert_close(other.maps.mean(dim=(1, 2)), logits[:, 2] - bias[2], rtol=1e-5, atol=1e-5)


def test_nin_cam_is_its_own_class_map_before_the_pooling() -> None:
    model = _model("nin_cifar", 1)
    backbone, head = split_classifier(model)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        found = class_activation_maps(model, x, class_id=3)
        class_maps = head[0](backbone(x)["mlpconv3"])  # the 1x1 convolution's ten maps, [N, 5, 7, 7]
    assert found.maps.shape == (2, 7, 7) and found.stride == 4
    torch.testing.assert_close(found.maps, class_maps[:, 3] - head[0].bias[3], rtol=1e-5, atol=1e-5)


def test_grad_cam_on_a_gap_head_is_relu_cam_over_the_cell_count() -> None:
    """Selvaraju et al. section 3.1: on GAP + linear, Grad-CAM = ReLU(CAM) / (h w)."""
    model = _model("resnet18", 3)
    x = torch.randn(2, 3, 96, 64)
    with torch.inference_mode():  # as Lightning's predict runs it
        cam = class_activation_maps(model, x)
        grad = class_activation_maps(model, x, method="grad-cam")
    h, w = cam.maps.shape[1:]
    assert grad.method == "grad-cam" and torch.equal(grad.classes, cam.classes)
    torch.testing.assert_close(grad.maps, cam.maps.clamp(min=0) / (h * w), rtol=1e-4, atol=1e-6)


def _grad_cam_with_hooks(model: torch.nn.Module, x: torch.Tensor, k: int) -> torch.Tensor:
    """Grad-CAM the usual way: a forward hook on the last stage, backward through the whole model."""
    backbone, _ = split_classifier(model)
    stage = backbone.stages[backbone.out_features[-1]]
    kept: dict[str, torch.Tensor] = {}
    handle = stage.register_forward_hook(lambda m, i, out: kept.update(a=out) or out.retain_grad())
    x = x.clone().requires_grad_(True)
    model(x)[:, k].sum().backward()
    handle.remove()
    a = kept["a"]
    return torch.relu((a.grad.mean(dim=(2, 3), keepdim=True) * a).sum(1)).detach()


@pytest.mark.parametrize("name, in_chans, size", [("lenet5", 1, 28), ("vgg11", 3, 64)])
def test_fc_heads_get_grad_cam_equal_to_the_hooked_computation(name: str, in_chans: int, size: int) -> None:
    model = _model(name, in_chans)
    assert gap_linear(split_classifier(model)[1]) is None
    x = torch.randn(2, in_chans, size, size)
    with torch.inference_mode():
        found = class_activation_maps(model, x, class_id=1)
    assert found.method == "grad-cam" and (found.maps >= 0).all()
    torch.testing.assert_close(found.maps, _grad_cam_with_hooks(model, x, 1), rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="Grad-CAM"):
        class_activation_maps(model, x, method="cam")


def test_every_gap_linear_paper_head_is_recognised() -> None:
    for name in ("nin", "googlenet", "densenet121", "mobilenet_v1"):
        assert gap_linear(build_classifier(name, 4).head) is not None, name
    for name in ("alexnet", "vgg16"):
        assert gap_linear(build_classifier(name, 4).head) is None, name


# -- geometry ------------------------------------------------------------------------------------------
def test_a_cell_lands_on_its_stride_block_and_back_on_the_file() -> None:
    maps = torch.zeros(1, 4, 5)
    maps[0, 2, 3] = 1.0
    up = maps_to_input(maps, 8, (30, 37))  # 4 x 8 = 32 rows cut to 30; 5 x 8 = 40 columns cut to 37
    assert up.shape == (1, 30, 37)
    y, x = divmod(int(up[0].argmax()), 37)
    assert 16 <= y < 24 and 24 <= x < 32
    short = maps_to_input(torch.ones(1, 2, 2), 4, (10, 9))  # shorter than the input: edge repeated
    assert short.shape == (1, 10, 9) and torch.allclose(short, torch.ones(1, 10, 9))
    back = map_to_original(up[0], (60, 111))  # the file was stretched to 30 x 37
    y0, x0 = divmod(int(back.argmax()), 111)
    assert back.shape == (60, 111) and 32 <= y0 < 48 and 72 <= x0 < 96


def test_unknown_class_name_is_one_line_with_the_closest() -> None:
    assert class_index(None, ["ants", "bees"]) is None and class_index("bees", ["ants", "bees"]) == 1
    with pytest.raises(UnknownNameError, match=r"unknown cam_class 'bess'; available: ants, bees; did you mean 'bees'"):
        class_index("bess", ["ants", "bees"])
    with pytest.raises(InvalidInputError, match="no class activation maps"):
        enable_cam(object(), True)
    enable_cam(object(), False)  # not asked for: nothing to refuse


# -- through the CLI and the Python API ------------------------------------------------------------------
SIZES = {"a.png": (40, 52), "b.png": (61, 30), "c.jpg": (250, 300)}  # (H, W) of the files


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A ResNet-18 (GAP + linear head) trained for one step through the CLI on tiny synthetic data."""
    root = tmp_path_factory.mktemp("cam")
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in SIZES.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(photos / name)
    cfg = {"seed_everything": 0,
           "model": {"class_path": "visiontasks.tasks.ClassificationTask", "init_args": {"backbone": "resnet18"}},
           "data": {"class_path": "visiontasks.data.ClassificationDataModule", "init_args": {
               "source": "synthetic", "root": str(root / "data"), "image_size": 48, "synthetic_classes": 3,
               "synthetic_per_class": 12, "val_fraction": 0.25,
               "test_fraction": 0.25, "batch_size": 4, "num_workers": 0, "predict_root": str(photos)}},
           "trainer": {"max_steps": 1, "limit_val_batches": 1, "accelerator": "cpu", "devices": 1,
                       "enable_progress_bar": False, "enable_model_summary": False, "log_every_n_steps": 1}}
    path = root / "cam.yaml"
    path.write_text(yaml.safe_dump(cfg))
    common = ["--config", str(path), "--trainer.default_root_dir", str(root / "runs")]
    with mock.patch.object(sys, "argv", ["visiontasks"]):
        assert main(["fit", *common]) == 0
        ckpt = root / "runs" / "cam" / "version_0" / "checkpoints" / "last.ckpt"
        assert main(["predict", *common, "--ckpt_path", str(ckpt), "--cam", "true"]) == 0
    return {"root": root, "photos": photos, "ckpt": ckpt, "common": common,
            "config_out": root / "runs" / "cam" / "version_0" / "predict" / "predictions"}


def _assert_cam_pngs(folder: Path) -> None:
    found = sorted(p.name for p in folder.glob("*_cam.png"))
    assert found == sorted(f"{Path(n).stem}_cam.png" for n in SIZES)
    for name, (h, w) in SIZES.items():
        k = max(1, -(-CAM_MIN_SIDE // min(h, w)))
        picture = np.asarray(Image.open(folder / f"{Path(name).stem}_cam.png"))
        assert picture.shape[0] == k * h and picture.shape[1] > k * w  # the image at its size, then the bar


def test_predict_with_config_writes_one_cam_png_per_image_at_its_size(run: dict) -> None:
    _assert_cam_pngs(run["config_out"])
    assert (run["config_out"] / "predictions.csv").is_file()  # the usual files are still written


def test_predict_source_cam_class_and_unknown_names(run: dict, capsys: pytest.CaptureFixture) -> None:
    out = run["root"] / "source_out"
    args = ["predict", "--ckpt_path", str(run["ckpt"]), "--source", str(run["photos"]), "--output", str(out),
            "--device", "cpu"]
    assert main([*args, "--cam_class", "square"]) == 0
    _assert_cam_pngs(out)
    capsys.readouterr()
    assert main([*args, "--cam", "true", "--cam_class", "sqare"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown cam_class 'sqare'" in err and "did you mean 'square'" in err
    with mock.patch.object(sys, "argv", ["visiontasks"]):
        assert main(["predict", *run["common"], "--ckpt_path", str(run["ckpt"]), "--cam_class", "triangel"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "unknown cam_class 'triangel'" in err and "did you mean 'triangle'" in err


def test_python_api_cam_in_file_pixels_and_save(run: dict, tmp_path: Path) -> None:
    from visiontasks import load_model

    model = load_model(run["ckpt"], device="cpu")
    plain = model.predict(run["photos"])
    results = model.predict(run["photos"], cam=True)
    assert [r.label for r in results] == [r.label for r in plain] and plain[0].cam is None
    for r in results:
        h, w = SIZES[Path(r.source).name]
        assert r.cam is not None and r.cam.shape == (h, w) and r.cam.dtype == torch.float32
        assert r.cam_class == r.label and r.cam_method == "cam" and float(r.cam.std()) > 0
        torch.testing.assert_close(r.probs, plain[[p.source for p in plain].index(r.source)].probs)
    named = model.predict(run["photos"], cam_class="triangle")
    assert all(r.cam_class == 2 and r.cam_name == "triangle" for r in named)
    picture = np.asarray(Image.open(named[0].save(tmp_path / "x.png")))
    h, w = SIZES[Path(named[0].source).name]
    assert picture.shape[0] == max(1, -(-CAM_MIN_SIDE // min(h, w))) * h
    with pytest.raises(UnknownNameError, match="did you mean 'triangle'"):
        model.predict(run["photos"], cam_class="triangl")
