"""AlexNet layer by layer: the notes' per-layer parameter figures against our ``alexnet_lrn`` (the
paper's two-column network) and torchvision's single-column ``alexnet``."""

from __future__ import annotations

import torch
from torch import nn

from ._count import canonical_on_meta, n_params
from ._registry import Budget, ClaimResult, claim, verdict_of

# The notes' figures (weights only, no biases), by layer: 000:81, 000:85, 000:90, 000:92.
NOTES = {"conv1": 34848, "conv3": 884736, "fc6": 177209344, "fc8": 4096000}
PAPER_TOTAL = 60e6  # Krizhevsky et al. 2012, section 4: "60 million parameters"


def layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The eight weight layers of an AlexNet in torchvision's layout: conv1..conv5, fc6..fc8."""
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    fcs = [m for m in model.classifier if isinstance(m, nn.Linear)]
    return [(f"conv{i + 1}", m) for i, m in enumerate(convs)] + [(f"fc{i + 6}", m) for i, m in enumerate(fcs)]


def conv5_side(model: nn.Module, size: int = 224) -> int:
    """Side of conv5's output map (before the last max pooling) at a ``size`` input, by a forward
    pass on the meta device (shapes only)."""
    x = torch.empty(1, 3, size, size, device="meta")
    last_pool = max(i for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d))
    return model.features[:last_pool](x).shape[-1]


def _shape(m: nn.Module) -> str:
    if isinstance(m, nn.Conv2d):
        g = f", groups {m.groups}" if m.groups > 1 else ""
        return f"{m.kernel_size[0]}x{m.kernel_size[1]}x{m.in_channels // m.groups} -> {m.out_channels}{g}"
    return f"{m.in_features} -> {m.out_features}"


@claim("alexnet_layers")
def alexnet_layers(budget: Budget) -> ClaimResult:
    """AlexNet's parameters layer by layer (figure in the notes): conv1 34848, conv3 884736, fc6 177209344, fc8
    4096000; the FC layers hold most of them. 001's AlexNet section (001:248-316) gives no numbers.

    Measures: weights and biases of each Conv2d/Linear of alexnet_lrn (paper, grouped = two columns) and alexnet
    (torchvision, one column)
    Paper: Krizhevsky et al. 2012: 60 million parameters
    Notes: seeds/000_4943f345b6f0fdd0.txt:74-95, seeds/001_ad955026876a85d8.txt:248-316
    """
    paper_net, tv_net = canonical_on_meta("alexnet_lrn"), canonical_on_meta("alexnet")
    rows, checks = [], []
    for (name, m), (_, t) in zip(layers(paper_net), layers(tv_net)):
        weights = m.weight.numel()
        claimed = NOTES.get(name)
        rows.append({"layer": name, "alexnet_lrn": _shape(m), "weights": weights, "weights+biases": n_params(m),
                     "notes": claimed if claimed is not None else "", "match": "" if claimed is None else
                     ("yes" if claimed == weights else "NO"), "alexnet (tv)": n_params(t)})
        if claimed is not None:
            checks.append(claimed == weights)
    total, tv_total = n_params(paper_net), n_params(tv_net)
    fc_share = sum(n_params(m) for n, m in layers(paper_net) if n.startswith("fc")) / total
    rows.append({"layer": "total", "alexnet_lrn": "", "weights": n_params(paper_net, weights_only=True),
                 "weights+biases": total, "notes": "", "match": "", "alexnet (tv)": tv_total})
    checks.append(abs(total - PAPER_TOTAL) / PAPER_TOTAL < 0.02)
    checks.append(fc_share > 0.5)  # 000:95: the affine layers have by far the most parameters
    fc6 = dict(layers(paper_net))["fc6"]
    side = conv5_side(paper_net)
    conv5_out = dict(layers(paper_net))["conv5"].out_channels
    unpooled = side * side * conv5_out * fc6.out_features
    fc6_why = (f"the notes' fc6 {NOTES['fc6']:,} = {side}x{side}x{conv5_out}x{fc6.out_features} "
               f"{'= ' if unpooled == NOTES['fc6'] else '!= '}conv5's map before the max pooling; "
               f"after it fc6 sees {fc6.in_features} inputs: {fc6.weight.numel():,} weights")
    return ClaimResult(rows, verdict_of(checks),
                       f"conv1, conv3, fc8 match; {fc6_why}; total {total:,} (paper: 60M), "
                       f"FC layers {fc_share:.0%} of it; torchvision's alexnet {tv_total:,}")
