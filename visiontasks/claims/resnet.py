"""ResNet's basic block vs its bottleneck block: parameters and multiply-adds of torchvision's blocks."""

from __future__ import annotations

import torch
from torchvision.models.resnet import BasicBlock, Bottleneck

from ._count import mult_adds, n_params
from ._registry import Budget, ClaimResult, claim, verdict_of

SIDE = 14  # conv4_x of ResNet-18/34, where the basic blocks have 256 channels


def _row(name: str, block: torch.nn.Module, channels: int) -> dict:
    convs = [m for m in block.modules() if isinstance(m, torch.nn.Conv2d)]
    return {"block": name, "convs": " - ".join(f"{m.kernel_size[0]}x{m.kernel_size[0]} {m.out_channels}" for m in convs),
            "params": n_params(block), "mult-adds": mult_adds(block, (channels, SIDE, SIDE))}


@claim("resnet_bottleneck")
def resnet_bottleneck(budget: Budget) -> ClaimResult:
    """The bottleneck block squeezes with a 1x1 convolution before its 3x3 and expands after, to cut the
    computation of the 3x3 (the paper: a 256-d bottleneck costs about what a 64-d basic block does).

    Measures: params and multiply-adds (torchinfo, input C x 14 x 14) of torchvision's BasicBlock and Bottleneck
    (BatchNorm included)
    Paper: He et al. 2016, Fig. 5 and section 4.1 ('similar time complexity')
    Notes: seeds/000_4943f345b6f0fdd0.txt:183-185
    """
    with torch.device("meta"):
        rows = [_row("basic, 256-d", BasicBlock(256, 256), 256),
                _row("bottleneck, 256-d (64 inside)", Bottleneck(256, 64), 256),
                _row("basic, 64-d (the paper's comparison)", BasicBlock(64, 64), 64)]
    basic, bottle, basic64 = rows
    checks = [bottle["params"] < basic["params"], bottle["mult-adds"] < basic["mult-adds"],
              abs(bottle["mult-adds"] / basic64["mult-adds"] - 1) < 0.1]
    return ClaimResult(rows, verdict_of(checks),
                       f"at 256 channels the bottleneck has {basic['params'] / bottle['params']:.1f}x fewer parameters "
                       f"({bottle['params']:,} vs {basic['params']:,}) and {basic['mult-adds'] / bottle['mult-adds']:.1f}x "
                       f"fewer multiply-adds; vs a 64-d basic block: {bottle['mult-adds'] / basic64['mult-adds']:.2f}x the "
                       "multiply-adds")
