"""visiontasks benchmark claims: every registered claim runs, returns a well-formed table and a
verdict, and the counting claims give the papers' exact numbers where the papers give them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models.googlenet import Inception
from torchvision.models.resnet import resnet18

from visiontasks.claims import CLAIMS, NOT_YET_MEASURED, list_claims, verdict_of
from visiontasks.claims.receptive_field import walk
from visiontasks.claims.stages import stage_fields

SEEDS = Path("/work/shared/seeds")
CITE = re.compile(r"^seeds/(\d{3}_[0-9a-f]{16}\.txt):(\d+)(?:-(\d+))?$")


def _result(name: str):
    """Counting claims at the small budget (instant); training and timing claims at the tests' tiny size."""
    return CLAIMS[name].run("small" if CLAIMS[name].kind == "counting" else "tiny")


def test_at_least_eight_counting_claims() -> None:
    assert len([c for c in CLAIMS.values() if c.kind == "counting"]) >= 8


def test_at_least_fourteen_claims_six_of_them_training() -> None:
    assert len(CLAIMS) >= 14 and len([c for c in CLAIMS.values() if c.kind == "training"]) >= 6


@pytest.mark.parametrize("name", list_claims())
def test_claim_runs_and_its_table_is_well_formed(name: str) -> None:
    c, r = CLAIMS[name], _result(name)
    assert r.verdict in ("AGREES", "DISAGREES", "MIXED")
    assert r.rows and r.finding and c.measures and c.statement
    keys = list(r.rows[0])
    assert all(list(row) == keys for row in r.rows), "every row has the same columns"
    json.dumps(r.rows)  # JSON-serialisable
    if c.kind == "training":
        assert r.curves and all(arms for arms in r.curves.values()), "a training claim has loss curves"
        assert all(len(cv["step"]) == len(cv["loss"]) > 0 for arms in r.curves.values() for cv in arms.values())
    assert c.sources or c.paper, "a claim cites the notes or, where they have none, the paper"


@pytest.mark.parametrize("source", sorted({s for c in CLAIMS.values() for s in c.sources}
                                          | {s for *_, src in NOT_YET_MEASURED for s in src}))
def test_citations_point_at_existing_lines(source: str) -> None:
    m = CITE.match(source)
    assert m, source
    path = SEEDS / m.group(1)
    if not path.is_file():
        pytest.skip(f"{path} not here")
    n_lines = len(path.read_text(encoding="utf-8").splitlines())
    assert 1 <= int(m.group(2)) <= int(m.group(3) or m.group(2)) <= n_lines


def test_verdict_of() -> None:
    assert verdict_of([True, True]) == "AGREES"
    assert verdict_of([False]) == "DISAGREES"
    assert verdict_of([True, False]) == "MIXED"


def test_small_kernels_notes_numbers() -> None:
    two, one = _result("two_3x3_vs_5x5").rows
    assert (two["params"], one["params"]) == (294912, 409600)
    assert two["receptive field"] == one["receptive field"] == 5
    rows = _result("three_3x3_vs_7x7").rows
    assert {r["params / C^2"] for r in rows} == {27, 49}


def test_vgg16_exact() -> None:
    rows = {r["config"]: r for r in _result("vgg_totals").rows}
    assert rows["D"]["params"] == 138_357_544
    assert [r["millions"] for r in rows.values()] == [133, 133, 133, 134, 138, 144]


def test_alexnet_notes_fc6_disagrees() -> None:
    r = _result("alexnet_layers")
    rows = {row["layer"]: row for row in r.rows}
    assert rows["fc6"]["weights"] == 9216 * 4096 and rows["fc6"]["match"] == "NO"
    assert rows["conv1"]["match"] == rows["conv3"]["match"] == rows["fc8"]["match"] == "yes"
    assert rows["total"]["weights+biases"] == 60_965_224 and r.verdict == "MIXED"


def test_paper_totals() -> None:
    mobilenet = _result("mobilenet_v1_total").rows[0]
    assert round(mobilenet["params"] / 1e6, 1) == 4.2 and round(mobilenet["mult-adds"] / 1e6) == 569
    nin = _result("nin_total").rows[0]
    assert nin["network"] == "nin_cifar" and round(nin["params"] / 1e6, 2) == 0.97
    googlenet = _result("googlenet_total").rows[0]
    assert googlenet["params"] == 6_624_904 and abs(googlenet["params"] / 6.8e6 - 1) < 0.05


def test_depthwise_ratio_is_the_papers_formula() -> None:
    rows = _result("depthwise_separable").rows
    assert all(r["ratio"] == r["paper 1/(1/N+1/9)"] for r in rows[:-1])
    assert 8 <= rows[-1]["ratio"] <= 9


def _measured_field(net: nn.Module, size: int) -> int:
    """Receptive field side from gradients: all weights positive, so no ReLU hides a pixel."""
    for p in net.parameters():
        nn.init.constant_(p, 0.01)
    net.eval()
    x = torch.ones(1, net_in_channels(net), size, size, requires_grad=True)
    y = net(x)
    y[0, :, y.shape[-2] // 2, y.shape[-1] // 2].sum().backward()
    cols = x.grad[0].abs().sum((0, 1)).nonzero()
    return int(cols.max() - cols.min() + 1)


def net_in_channels(net: nn.Module) -> int:
    return next(m for m in net.modules() if isinstance(m, nn.Conv2d)).in_channels


@pytest.mark.parametrize("make", [
    lambda: nn.Sequential(*list(resnet18().children())[4:6]),  # layer1, layer2: residual blocks
    lambda: Inception(16, 8, 8, 8, 4, 8, 8),  # parallel branches, the largest wins
    lambda: nn.Sequential(nn.Conv2d(3, 4, 3, dilation=2), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2), nn.Conv2d(4, 4, 3)),
])
def test_walked_field_equals_gradient_support(make) -> None:
    net = make()
    assert walk(net).size == _measured_field(net, 96)


@pytest.mark.parametrize("name", ["vgg16", "resnet50", "googlenet", "mobilenet_v2"])
def test_walked_stride_matches_declared(name: str) -> None:
    assert all(r["stride"] == r["walked stride"] for r in stage_fields(name))


def test_cli_writes_markdown_and_json(tmp_path: Path, capsys) -> None:
    from visiontasks.cli import main

    assert main(["benchmark", "claims", "--only", "vgg_totals", "two_3x3_vs_5x5", "--output", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "vgg_totals" in printed and "AGREES" in printed
    data = json.loads((tmp_path / "claims.json").read_text())
    assert [c["name"] for c in data["claims"]] == ["two_3x3_vs_5x5", "vgg_totals"]
    md = (tmp_path / "claims.md").read_text()
    assert "138,357,544" in md and "Not yet measured" in md


def test_cli_unknown_claim(capsys) -> None:
    from visiontasks.cli import main

    assert main(["benchmark", "claims", "--only", "nope"]) == 2
    assert "unknown claim" in capsys.readouterr().err


def test_training_claim_report_writes_its_chart(tmp_path: Path) -> None:
    from visiontasks.claims.report import run_claims, write_report

    md, js = write_report(run_claims(["dropout"], "tiny"), tmp_path, "test", "2026-01-01")
    png = tmp_path / "dropout.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](dropout.png)" in md.read_text()
    assert json.loads(js.read_text())["claims"][0]["curves"]


def test_plain_block_is_basic_block_without_its_shortcut() -> None:
    from torchvision.models.resnet import BasicBlock

    from visiontasks.claims.plain_residual import PlainBlock, cifar_net

    torch.manual_seed(0)
    basic = BasicBlock(4, 4).eval()
    plain = PlainBlock(4, 4).eval()
    plain.load_state_dict(basic.state_dict())
    x = torch.randn(2, 4, 8, 8)
    # basic = relu(F(x) + x), plain = relu(F(x)): equal where x <= 0 cannot be told apart, so compare
    # against the residual computed by hand
    f = plain.bn2(plain.conv2(plain.relu(plain.bn1(plain.conv1(x)))))
    assert torch.allclose(basic(x), torch.relu(f + x)) and torch.allclose(plain(x), torch.relu(f))
    for blocks in (1, 3):
        net = cifar_net(blocks, residual=False)
        weights = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        assert len(weights) == 6 * blocks + 2
        assert cifar_net(blocks, residual=True)(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_alexnet_variants_swap_only_the_normalisation() -> None:
    from visiontasks.backbones.alexnet import AlexNetLRN
    from visiontasks.claims._count import n_params
    from visiontasks.claims.lrn import alexnet_variant

    with torch.device("meta"):
        paper = alexnet_variant("LRN (paper)")
        assert n_params(paper) == n_params(AlexNetLRN(10))
        assert n_params(alexnet_variant("none")) == n_params(paper)
        plain = (nn.Conv2d, nn.ReLU, nn.MaxPool2d)
        kinds = {n: [type(m).__name__ for m in alexnet_variant(n).features if not isinstance(m, plain)]
                 for n in ("LRN (paper)", "none", "BatchNorm")}
    assert kinds == {"LRN (paper)": ["LocalResponseNorm"] * 2, "none": ["Identity"] * 2,
                     "BatchNorm": ["BatchNorm2d"] * 2}
    small = alexnet_variant("LRN (paper)", shrink=8)
    assert small(torch.randn(2, 3, 64, 64)).shape == (2, 10)


def test_shapes_set_is_reproducible_balanced_and_not_noise() -> None:
    from visiontasks.claims._shapes import make_shapes

    x, y = make_shapes(200, 16, seed=3)
    x2, y2 = make_shapes(200, 16, seed=3)
    assert x.shape == (200, 3, 16, 16) and torch.equal(x, x2) and torch.equal(y, y2)
    assert torch.bincount(y).tolist() == [20] * 10
    # the class is in the shape, not in the mean colour: per-class mean brightness is about the same
    means = torch.stack([x[y == k].mean() for k in range(10)])
    assert float(means.max() - means.min()) < 0.5


def test_a_claims_words_come_from_its_docstring_and_one_without_them_is_refused() -> None:
    from visiontasks.claims._registry import claim_text

    def counted(budget):
        """Two 3x3 convolutions
        need fewer weights.

        Measures: weights of nn.Conv2d stacks
        Paper: Simonyan & Zisserman 2015
        Notes: seeds/000_4943f345b6f0fdd0.txt:134-139,
        seeds/002_fe5bbf9b65554f16.txt:163
        """

    assert claim_text(counted) == ("Two 3x3 convolutions need fewer weights.", "weights of nn.Conv2d stacks",
                                   "Simonyan & Zisserman 2015",
                                   ("seeds/000_4943f345b6f0fdd0.txt:134-139", "seeds/002_fe5bbf9b65554f16.txt:163"))

    def unsaid(budget):
        """A claim that does not say what it measures."""

    with pytest.raises(ValueError, match="unsaid.*Measures"):
        claim_text(unsaid)


def test_fcn_claim_convolutionized_head_equals_the_fc_head_and_slides() -> None:
    import torch

    from visiontasks.claims._nets import small_cnn
    from visiontasks.claims.fcn import convolutionized

    torch.manual_seed(1)
    fc = small_cnn(32, width=4, fc_hidden=16).eval()
    conv = convolutionized(fc).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(fc(x), conv(x).flatten(1), atol=1e-6)
        big = torch.randn(1, 3, 64, 64)
        assert conv(big).shape == (1, 10, 5, 5)  # one score vector per 8-px step of the 32-px window
        with pytest.raises(RuntimeError):
            fc(big)
    assert CLAIMS["fcn_any_size"].run("small").verdict == "AGREES"


def test_fcn_skips_boundary_band_and_small_object_recall() -> None:
    import numpy as np
    import torch

    from visiontasks.claims.fcn_skips import boundary_band, small_object_recall

    y = torch.zeros(1, 10, 10, dtype=torch.long)
    y[0, :, 5:] = 1  # one vertical edge between columns 4 and 5
    band = boundary_band(y, width=2)
    assert band[0, 0].tolist() == [False, False, False, True, True, True, True, False, False, False]
    mask = np.zeros((10, 10), bool)
    mask[0:2, 5:7] = True  # a 4-pixel object of class 1, half of it predicted
    pred = y.clone()
    pred[0, 0, 5:7] = 0
    assert small_object_recall(pred, y, [[mask]], small_area=5) == (0.5, 1)
    recall, n = small_object_recall(pred, y, [[mask]], small_area=4)  # 4 px is not under 4: none small
    assert n == 0 and np.isnan(recall)


def test_detector_ladder_uses_the_shipped_shapes_configs_settings() -> None:
    import yaml

    from visiontasks.claims.detector_ladder import LADDER

    configs = {"rcnn": "rcnn_resnet18_shapes", "fast_rcnn": "fast_rcnn_resnet18_shapes",
               "faster_rcnn": "faster_rcnn_resnet18_shapes", "yolov1": "yolov1_resnet18_shapes",
               "ssd": "ssd_shapes", "mask_rcnn": "mask_rcnn_resnet18_shapes"}
    root = Path(__file__).resolve().parents[1] / "configs" / "detection"
    assert sorted(name for name, _ in LADDER.values()) == sorted(configs)
    for name, kwargs in LADDER.values():
        shipped = yaml.safe_load((root / f"{configs[name]}.yaml").read_text())["model"]["init_args"]
        assert shipped["model"] == name and shipped["backbone"] == "resnet18"
        assert kwargs == shipped["model_kwargs"], name
