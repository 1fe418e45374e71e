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


# -- Network in Network ---------------------------------------------------------------------------
def test_nin_parameter_counts_and_layout() -> None:
    """Lin et al. 2013: the CIFAR-10 NiN has "0.97M" parameters; the authors' Caffe layout gives
    966,986 (conv5x5 192-1x1 160-1x1 96 / conv5x5 192-192-192 / conv3x3 192-192-10, with biases)."""
    cifar = build_classifier("nin_cifar", num_classes=10)
    assert n_params(cifar) == 966_986
    assert n_params(build_classifier("nin", num_classes=1000)) == 7_595_176  # the authors' 29 MB model
    assert not any(isinstance(m, nn.Linear) for m in cifar.modules())  # no fully connected layer
    convs = [m for m in cifar.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0]) for c in convs] == [
        (192, 5), (160, 1), (96, 1), (192, 5), (192, 1), (192, 1), (192, 3), (192, 1), (10, 1)
    ]
    assert [(f.name, f.channels, f.stride) for f in cifar.backbone.feature_info] == [
        ("mlpconv1", 96, 2), ("mlpconv2", 192, 4), ("mlpconv3", 192, 4)
    ]
    imagenet = build_backbone("nin")
    assert [(f.channels, f.stride) for f in imagenet.feature_info] == [(96, 8), (256, 16), (384, 32), (1024, 32)]


def test_nin_head_is_class_conv_and_global_average_pooling() -> None:
    """Logits are the spatial means of the class-count 1x1 convolution over the last block's
    features (no ReLU: logits may be negative), at any input size; the backbone's features do not
    depend on the class count."""
    torch.manual_seed(0)
    clf = build_classifier("nin_cifar", num_classes=7, in_chans=1).eval()
    conv = clf.head[0]
    assert isinstance(conv, nn.Conv2d) and conv.out_channels == 7 and conv.kernel_size == (1, 1)
    for size in (32, 45):
        x = torch.randn(2, 1, size, size)
        with torch.no_grad():
            feats = clf.backbone(x)["mlpconv3"]
            expected = conv(feats).mean(dim=(2, 3))
            assert torch.allclose(clf(x), expected, atol=1e-6)
    assert feats.shape[1] == build_backbone("nin_cifar").out_channels == 192


def test_nin_weights_with_another_class_count_reinitialise_the_class_conv(tmp_path) -> None:
    """A 10-class NiN state_dict loads into a 4-class one: every MLPconv weight is kept, the class
    conv (NiN has no Linear layer) is re-initialised with a warning."""
    from visiontasks.backbones.nin import nin_cifar

    torch.manual_seed(0)
    source = nin_cifar(num_classes=10)
    path = tmp_path / "nin10.pth"
    torch.save(source.state_dict(), path)
    with pytest.warns(UserWarning, match=r"classifier\.0 re-initialised"):
        clf = build_classifier("nin_cifar", num_classes=4, weights=path)
    kept = clf.backbone.stages["mlpconv3"][-1][-2].weight  # the last block's last 1x1 convolution
    assert torch.equal(kept, source.features[-1][-2].weight)
    assert clf(torch.randn(1, 3, 32, 32)).shape == (1, 4)


def test_nin_strides_decide_which_fcn_fits() -> None:
    """The CIFAR NiN's deepest stride is 4 (like LeNet-5): no FCN; the ImageNet NiN hosts FCN-8s."""
    from visiontasks.heads.fcn import FCN, FCNHead
    from visiontasks.tasks import SegmentationTask

    with pytest.raises(ValueError, match=r"no stride-32 output.*mlpconv3 \(stride 4\)"):
        FCNHead(build_backbone("nin_cifar").feature_info, 3, "fcn32s")
    with pytest.raises(ValueError, match="strides"):
        SegmentationTask("fcn8s", "nin_cifar", num_classes=3)
    body = cached_backbone("nin", 3)
    head = FCNHead(body.feature_info, 3, "fcn8s", fc_channels=8, fc_kernel_size=3).eval()
    assert set(head.in_features.values()) == {"mlpconv1", "mlpconv2", "mlpconv4"}
    with torch.no_grad():
        assert FCN(body, head)(torch.randn(1, 3, 67, 75)).shape == (1, 3, 67, 75)


def test_nin_cifar_summary_command(capsys) -> None:
    from visiontasks.cli import main as cli_main

    assert cli_main(["summary", "nin_cifar", "--num_classes", "10", "--depth", "2"]) == 0
    out = capsys.readouterr().out
    assert "966,986 parameters" in out and "mlpconv3 (192 ch, stride 4)" in out
