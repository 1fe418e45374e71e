"""Receptive field of each backbone stage, by walking the stages' layers (no forward pass)."""

from __future__ import annotations

import torch

from ._registry import Budget, ClaimResult, claim, verdict_of
from .receptive_field import Field, walk

BACKBONES = {"small": ("alexnet", "vgg16", "resnet18", "googlenet", "nin_cifar", "mobilenet_v1"),
             "full": ("lenet5", "alexnet", "vgg16", "vgg19", "resnet18", "resnet50", "googlenet", "nin_cifar", "nin",
                      "mobilenet_v1", "mobilenet_v2", "densenet121")}


def stage_fields(name: str) -> list[dict]:
    """One row per stage of backbone ``name``: its declared stride and the walked field."""
    from visiontasks.backbones import build_backbone

    with torch.device("meta"):
        net = build_backbone(name)
    rows, field = [], Field()
    for info, stage in zip(net._all_info, net.stages.values()):
        field = walk(stage, field)
        rows.append({"backbone": name, "stage": info.name, "stride": info.stride, "walked stride": field.jump,
                     "receptive field": field.size})
    return rows


@claim("stage_receptive_fields")
def stage_receptive_fields(budget: Budget) -> ClaimResult:
    """Small kernels stacked reach the receptive field of large ones: VGG (3x3 only) sees as much of the image
    as AlexNet (11x11, 5x5) does, and every stage sees more than the one before.

    Measures: receptive field (pixels, one side) of each stage's output, walked from the modules' kernel, stride
    and dilation (largest branch of an Inception block, main path of a residual block); the walked stride is
    checked against the stage's declared stride
    Notes: seeds/000_4943f345b6f0fdd0.txt:133-136
    """
    from visiontasks.backbones import list_backbones

    names = [n for n in BACKBONES[budget] if n in list_backbones()]
    per_net = {n: stage_fields(n) for n in names}
    rows = [r for n in names for r in per_net[n]]
    growing = all(a["receptive field"] < b["receptive field"] for r in per_net.values() for a, b in zip(r, r[1:]))
    vgg, alex = per_net["vgg16"][-1]["receptive field"], per_net["alexnet"][-1]["receptive field"]
    last = ", ".join(f"{n} {r[-1]['receptive field']}" for n, r in per_net.items())
    return ClaimResult(rows, verdict_of([growing, vgg >= alex]),
                       f"last stage: {last}; VGG-16 with 3x3 kernels only sees {vgg} px vs AlexNet's {alex}; "
                       f"fields grow stage by stage: {'yes' if growing else 'no'}")
