"""Network in Network: the global-average-pooling head vs a fully connected head on the same feature
map, and the networks' totals."""

from __future__ import annotations

import torch
from torch import nn

from ._count import canonical_on_meta, n_params
from ._registry import Budget, ClaimResult, claim, verdict_of


def feature_shape(model: nn.Module, size: int) -> tuple[int, int, int]:
    """``(C, H, W)`` of ``model.features`` at a ``size`` x ``size`` input (meta device, shapes only)."""
    return tuple(model.features(torch.empty(1, 3, size, size, device="meta")).shape[1:])


def _heads(name: str, num_classes: int, size: int) -> list[dict]:
    model = canonical_on_meta(name, num_classes)
    c, h, w = feature_shape(model, size)
    with torch.device("meta"):
        fc = nn.Sequential(nn.Flatten(1), nn.Linear(c * h * w, num_classes))
    return [{"network": name, "feature map": f"{c}x{h}x{w}", "head": "1x1 conv + global average pool (NiN)",
             "params": n_params(model.classifier)},
            {"network": name, "feature map": f"{c}x{h}x{w}", "head": "flatten + one FC layer",
             "params": n_params(fc)}]


@claim("nin_gap_head")
def nin_gap_head(budget: Budget) -> ClaimResult:
    """Global average pooling has fewer parameters than a fully connected head (so overfits less).

    Measures: parameters of nin_cifar's and nin's own head (1x1 class conv + GAP) vs one nn.Linear from the same
    feature map (flattened) to the classes
    Paper: Lin et al. 2013, section 3.2
    Notes: seeds/002_fe5bbf9b65554f16.txt:153-156
    """
    rows = _heads("nin_cifar", 10, 32) + _heads("nin", 1000, 224)
    ratios = [fc["params"] / gap["params"] for gap, fc in zip(rows[::2], rows[1::2])]
    return ClaimResult(rows, verdict_of([r > 1 for r in ratios]),
                       f"the FC head has {ratios[0]:.0f}x the parameters of the GAP head on nin_cifar "
                       f"({rows[1]['params']:,} vs {rows[0]['params']:,}) and {ratios[1]:.0f}x on nin; the "
                       "overfitting half of the claim is a training claim, not measured here")


@claim("nin_total")
def nin_total(budget: Budget) -> ClaimResult:
    """The CIFAR-10 NiN has about 0.97M parameters (the notes give no figure); MLPconv = a convolution followed
    by two 1x1 convolutions.

    Measures: parameters of nin_cifar (10 classes) and nin (1000 classes, bytes as float32); the 1x1
    convolutions after each MLPconv block's first convolution
    Paper: 0.97M: the figure issue #19 and visiontasks/backbones/nin.py quote for the CIFAR-10 NiN; nin: the
    authors' 29 MB ImageNet Caffe model
    Notes: seeds/002_fe5bbf9b65554f16.txt:144-150
    """
    from visiontasks.backbones.nin import MLPConv

    rows, checks = [], []
    for name, classes, target in (("nin_cifar", 10, 0.97e6), ("nin", 1000, None)):
        model = canonical_on_meta(name, classes)
        n = n_params(model)
        ones = [sum(1 for m in b if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1))
                for b in model.features if isinstance(b, MLPConv)]
        rows.append({"network": name, "classes": classes, "params": n, "millions": round(n / 1e6, 2),
                     "float32 MiB": round(n * 4 / 2**20, 1), "1x1 convs per MLPconv": ones})
        if target:
            checks.append(round(n / 1e6, 2) == round(target / 1e6, 2))
    cifar, imagenet = rows
    return ClaimResult(rows, verdict_of(checks),
                       f"nin_cifar {cifar['params']:,} ({cifar['millions']}M); nin {imagenet['params']:,} = "
                       f"{imagenet['float32 MiB']} MiB as float32 (the authors' 29 MB model); MLPconv blocks carry "
                       f"{cifar['1x1 convs per MLPconv']} 1x1 convolutions in nin_cifar (the last block's second "
                       "1x1 is the class layer, in the head)")
