"""The backbone contract, parametrized over every registered backbone (after timm's test_models)."""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torchvision
from torch import nn

from visiontasks.backbones import build_backbone, build_classifier, get_spec, list_backbones

ALL = list_backbones()
# Large models are checked at a smaller input to keep the suite fast; the contract is size-free.
SIZE = (97, 131)


@functools.lru_cache(maxsize=None)
def cached_backbone(name: str, in_chans: int) -> nn.Module:
    """Each backbone is built once per channel count for the contract tests (VGGs take seconds)."""
    torch.manual_seed(0)
    return build_backbone(name, in_chans=in_chans).eval()


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "name,expected",
    [
        ("alexnet", 61_100_840),
        ("vgg11", 132_863_336),
        ("vgg13", 133_047_848),
        ("vgg16", 138_357_544),
        ("vgg19", 143_667_240),
        ("resnet18", 11_689_512),
        ("resnet50", 25_557_032),
        ("googlenet", 6_624_904),
        ("densenet121", 7_978_856),
        ("mobilenet_v2", 3_504_872),
    ],
)
def test_parameter_count_equals_torchvision(name: str, expected: int) -> None:
    ours = build_classifier(name, num_classes=1000)
    assert n_params(ours) == expected
    kwargs = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    assert n_params(getattr(torchvision.models, name)(weights=None, **kwargs)) == expected


@pytest.mark.parametrize("name,millions", [("vgg11_lrn", 133), ("vgg16_c", 134), ("vgg_a_lrn", 133), ("vgg_c", 134)])
def test_vgg_paper_table_2(name: str, millions: int) -> None:
    """Simonyan & Zisserman, Table 2: A-LRN 133M, C 134M (rounded)."""
    assert round(n_params(build_classifier(name)) / 1e6) == millions


def test_lenet5_and_mobilenet_v1_counts() -> None:
    assert n_params(build_classifier("lenet5", num_classes=10, in_chans=1)) == 61_706  # LeCun et al. 1998
    assert n_params(build_classifier("mobilenet_v1")) == 4_231_976  # Howard et al. 2017: 4.2M
    assert round(n_params(build_classifier("alexnet_lrn")) / 1e6) == 61  # Krizhevsky et al.: "60 million"


def _assert_contract(net, x: torch.Tensor, out: dict[str, torch.Tensor]) -> None:
    assert list(out) == [f.name for f in net.feature_info]
    for info in net.feature_info:
        t = out[info.name]
        assert t.shape[1] == info.channels, info
        for side, full in zip(t.shape[2:], x.shape[2:]):
            assert 1 <= side <= math.ceil(full / info.stride), (info, t.shape)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("in_chans", [1, 3])
def test_feature_contract(name: str, in_chans: int) -> None:
    """Declared channels and strides match the real outputs, for odd input sides.

    The stride is checked exactly: enlarging the input by ``k * max_stride`` pixels enlarges each
    output by ``k * max_stride / stride`` cells (true for any padding scheme)."""
    net = cached_backbone(name, in_chans)
    max_stride = max(f.stride for f in net.feature_info)
    h, w = SIZE
    with torch.no_grad():
        x1 = torch.randn(1, in_chans, h, w)
        x2 = torch.randn(1, in_chans, h + 2 * max_stride, w + max_stride)
        o1, o2 = net(x1), net(x2)
    _assert_contract(net, x1, o1)
    _assert_contract(net, x2, o2)
    for info in net.feature_info:
        dh = o2[info.name].shape[2] - o1[info.name].shape[2]
        dw = o2[info.name].shape[3] - o1[info.name].shape[3]
        assert (dh, dw) == (2 * max_stride // info.stride, max_stride // info.stride), info


@pytest.mark.parametrize("name", ALL)
def test_bf16_autocast(name: str) -> None:
    net = cached_backbone(name, 3)
    x = torch.randn(1, 3, 65, 77)  # odd sides; smaller than SIZE because CPU bf16 convolutions are slow
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
    _assert_contract(net, x, out)
    assert all(torch.isfinite(t.float()).all() for t in out.values())
    # convolutions run in bf16 under autocast: at least the deepest map comes out in bf16
    assert out[net.out_features[-1]].dtype == torch.bfloat16


def test_out_indices_select_and_stop_early() -> None:
    net = build_backbone("resnet18", out_indices=(2, -1))
    assert net.out_features == ["layer2", "layer4"]
    assert [f.stride for f in net.feature_info] == [8, 32]
    out = net(torch.randn(1, 3, 64, 64))
    assert list(out) == ["layer2", "layer4"]
    shallow = build_backbone("resnet18", out_indices=(1,))
    calls: list[str] = []
    shallow.stages["layer4"].register_forward_hook(lambda *a: calls.append("layer4"))
    shallow(torch.randn(1, 3, 64, 64))
    assert calls == []  # deeper stages are not run
    with pytest.raises(ValueError, match="out of range"):
        build_backbone("resnet18", out_indices=(7,))


def test_frozen_stages_do_not_train() -> None:
    net = build_backbone("resnet18", frozen_stages=2)
    frozen = list(net.stages.values())[:2]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in net.stages["layer2"].parameters())
    net.train()
    bn = net.stages["stem"][1]
    assert not bn.training  # frozen stages stay in eval mode
    before = bn.running_mean.clone()
    net(torch.randn(2, 3, 64, 64) * 3 + 1).values()
    assert torch.equal(bn.running_mean, before)
    assert net.stages["layer2"].training


def test_norm_eval_freezes_batchnorm_statistics() -> None:
    net = build_backbone("resnet18", norm_eval=True).train()
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    before = [m.running_mean.clone() for m in bns]
    net(torch.randn(2, 3, 64, 64) + 2)
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, bns))
    assert all(p.requires_grad for p in net.parameters())  # affine parameters still train


def test_unknown_name_lists_available() -> None:
    with pytest.raises(ValueError, match="available: .*resnet18"):
        build_backbone("resnet1000")


def test_wrong_input_channels_is_a_clear_error() -> None:
    net = build_backbone("resnet18", in_chans=1)
    with pytest.raises(ValueError, match="in_chans"):
        net(torch.randn(1, 3, 32, 32))


TV_BUILDERS = {
    "alexnet": lambda: torchvision.models.alexnet(weights=None),
    "vgg16": lambda: torchvision.models.vgg16(weights=None),
    "googlenet": lambda: torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True),
    "resnet50": lambda: torchvision.models.resnet50(weights=None),
    "densenet121": lambda: torchvision.models.densenet121(weights=None),
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(weights=None),
}


@pytest.mark.parametrize("name", list(TV_BUILDERS))
def test_torchvision_state_dict_loads_by_path(name: str, tmp_path) -> None:
    """A torchvision model's weights (random init, saved offline) load into our backbone and give
    identical logits and identical deepest features: how ImageNet weights are proven to fit."""
    torch.manual_seed(1)
    tv_model = TV_BUILDERS[name]().eval()
    path = tmp_path / f"{name}.pth"
    torch.save(tv_model.state_dict(), path)
    ours = build_classifier(name, weights=path).eval()
    x = torch.randn(2, 3, 96, 112) if name not in ("alexnet", "vgg16") else torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = tv_model(x)
        assert torch.allclose(ours(x), expected, atol=1e-5, rtol=1e-4)
        backbone = build_backbone(name, weights=str(path)).eval()
        assert torch.equal(backbone(x)[backbone.out_features[-1]], ours.backbone(x)[backbone.out_features[-1]])


def test_weights_name_resolves_without_download(monkeypatch) -> None:
    """A torchvision weights name is accepted; the download happens only when it is used."""
    from torchvision.models import ResNet18_Weights

    calls = []
    monkeypatch.setattr(
        ResNet18_Weights.IMAGENET1K_V1.__class__,
        "get_state_dict",
        lambda self, *a, **k: calls.append(self) or torchvision.models.resnet18().state_dict(),
    )
    net = build_backbone("resnet18", weights="IMAGENET1K_V1")
    assert calls == [ResNet18_Weights.IMAGENET1K_V1]
    assert net.out_channels == 512
    with pytest.raises(ValueError, match="unknown weights"):
        build_backbone("resnet18", weights="IMAGENET9K_V9")
    with pytest.raises(ValueError, match="no torchvision weights"):
        build_backbone("vgg16_c", weights="IMAGENET1K_V1")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_backbone("resnet18", weights="/nonexistent/weights.pth")


def test_pretrained_rgb_weights_adapt_to_one_channel(tmp_path) -> None:
    """in_chans=1 sums the RGB filters: a grey image gives the same features as its RGB copy."""
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    rgb = build_backbone("resnet18", weights=path).eval()
    grey = build_backbone("resnet18", weights=path, in_chans=1).eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(rgb(x.expand(1, 3, 64, 64))["layer4"], grey(x)["layer4"], atol=1e-4)


def test_classifier_head_matches_class_count_and_warns_on_reinit(tmp_path) -> None:
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.warns(UserWarning, match="re-initialised"):
        clf = build_classifier("resnet18", num_classes=7, weights=path)
    assert clf(torch.randn(2, 3, 64, 64)).shape == (2, 7)


def test_specs_declare_their_first_conv() -> None:
    for name in ALL:
        spec = get_spec(name)
        assert spec.first_conv
