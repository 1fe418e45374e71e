"""GoogLeNet: an Inception block with and without its 1x1 reductions, and the network's total."""

from __future__ import annotations

from torch import nn
from torchvision.models.googlenet import BasicConv2d, GoogLeNet, Inception

from ._count import classifier_on_meta, mult_adds, n_params
from ._registry import Budget, ClaimResult, claim, verdict_of

# inception (3a) of Table 1 (Szegedy et al. 2015): input 192 x 28 x 28; #1x1 64, #3x3 reduce 96,
# #3x3 128, #5x5 reduce 16, #5x5 32, pool proj 32. torchvision's GoogLeNet builds it as
# Inception(192, 64, 96, 128, 16, 32, 32).
IN_CH, SIDE = 192, 28
CH1, RED3, CH3, RED5, CH5, POOL = 64, 96, 128, 16, 32, 32


class InceptionPaper(nn.Module):
    """Inception (3a) with the paper's 5x5 branch (torchvision's uses 3x3 there); ``reduce=False``
    drops the 1x1 reductions in front of the 3x3 and 5x5 (the pool projection is kept, so both
    variants output the same 256 channels)."""

    def __init__(self, reduce: bool = True) -> None:
        super().__init__()

        def branch(reduce_to: int, out: int, k: int) -> nn.Sequential:
            if not reduce:
                return nn.Sequential(BasicConv2d(IN_CH, out, kernel_size=k, padding=k // 2))
            return nn.Sequential(BasicConv2d(IN_CH, reduce_to, kernel_size=1),
                                 BasicConv2d(reduce_to, out, kernel_size=k, padding=k // 2))

        self.branch1 = BasicConv2d(IN_CH, CH1, kernel_size=1)
        self.branch2 = branch(RED3, CH3, 3)
        self.branch3 = branch(RED5, CH5, 5)
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), BasicConv2d(IN_CH, POOL, kernel_size=1))

    def forward(self, x):  # noqa: ANN001, ANN201 - same as torchvision's Inception
        import torch

        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


def _row(name: str, block: nn.Module) -> dict:
    return {"block": name, "params": n_params(block), "conv weights": n_params(block, weights_only=True),
            "mult-adds": mult_adds(block, (IN_CH, SIDE, SIDE))}


@claim("inception_1x1_reduction")
def inception_1x1_reduction(budget: Budget) -> ClaimResult:
    """GoogLeNet's Inception block uses 1x1 convolutions to cut the parameters (and computation) substantially
    ('대폭').

    Measures: params and multiply-adds (torchinfo, 1x192x28x28 input) of inception (3a) with and without the 1x1
    reductions before its 3x3 and 5x5 branches
    Paper: Szegedy et al. 2015, Table 1, inception (3a)
    Notes: seeds/000_4943f345b6f0fdd0.txt:150-155
    """
    rows = [
        _row("inception3a as built (torchvision: '5x5' branch is 3x3)", Inception(IN_CH, CH1, RED3, CH3, RED5, CH5, POOL)),
        _row("paper's inception (3a), with 1x1 reductions", InceptionPaper(reduce=True)),
        _row("same, without the 1x1 reductions", InceptionPaper(reduce=False)),
    ]
    with_red, without = rows[1], rows[2]
    p_ratio = without["params"] / with_red["params"]
    m_ratio = without["mult-adds"] / with_red["mult-adds"]
    return ClaimResult(rows, verdict_of([p_ratio >= 2, m_ratio >= 2]),
                       f"without the reductions the block has {p_ratio:.2f}x the parameters "
                       f"({without['params']:,} vs {with_red['params']:,}) and {m_ratio:.2f}x the "
                       f"multiply-adds ({without['mult-adds'] / 1e6:.0f}M vs {with_red['mult-adds'] / 1e6:.0f}M)")


@claim("googlenet_total")
def googlenet_total(budget: Budget) -> ClaimResult:
    """GoogLeNet has about 6.8 million parameters (the paper; the notes give no total).

    Measures: parameters of the registered googlenet (torchvision's definition, BatchNorm, no auxiliary
    classifiers) and of torchvision's GoogLeNet with its two auxiliary classifiers
    Paper: Szegedy et al. 2015, Table 1 (sum of the params column: about 6.8M)
    Notes: seeds/000_4943f345b6f0fdd0.txt:146-155
    """
    ours = n_params(classifier_on_meta("googlenet"))
    import torch

    with torch.device("meta"):
        with_aux = n_params(GoogLeNet(num_classes=1000, aux_logits=True, init_weights=False))
    rows = [{"network": "googlenet (registered, no aux heads)", "params": ours, "vs 6.8M": f"{ours / 6.8e6 - 1:+.1%}"},
            {"network": "torchvision GoogLeNet with both aux heads", "params": with_aux,
             "vs 6.8M": f"{with_aux / 6.8e6 - 1:+.1%}"}]
    return ClaimResult(rows, verdict_of([abs(ours / 6.8e6 - 1) < 0.05]),
                       f"we count the network without its auxiliary classifiers (as used at test time): "
                       f"{ours:,} ({ours / 6.8e6 - 1:+.1%} of 6.8M; torchvision's '5x5' branches are 3x3, "
                       f"and it adds BatchNorm); with both aux heads {with_aux:,}")
