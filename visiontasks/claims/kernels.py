"""Small kernels stacked vs one large kernel: parameters of real ``nn.Conv2d`` stacks and their
receptive fields (VGG's argument)."""

from __future__ import annotations

from torch import nn

from ._count import n_params
from ._registry import Budget, ClaimResult, claim, verdict_of
from .receptive_field import walk


def conv_stack(channels: int, kernel: int, depth: int) -> nn.Sequential:
    """``depth`` stride-1 ``kernel`` x ``kernel`` convolutions at ``channels`` channels, no bias
    (the notes count weights only), with a ReLU after each."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=False), nn.ReLU()]
    return nn.Sequential(*layers)


def _row(channels: int, kernel: int, depth: int) -> dict:
    stack = conv_stack(channels, kernel, depth)
    return {"layers": f"{depth} x {kernel}x{kernel}", "C": channels, "params": n_params(stack),
            "params / C^2": n_params(stack) // channels**2, "receptive field": walk(stack).size,
            "ReLUs": depth}


@claim("two_3x3_vs_5x5")
def two_3x3_vs_5x5(budget: Budget) -> ClaimResult:
    """Two stacked 3x3 convolutions see the same 5x5 field as one 5x5 but need fewer parameters: 294912 vs
    409600 at C=128.

    Measures: weights of real nn.Conv2d stacks (bias=False) at C=128, receptive field by walking them
    Notes: seeds/000_4943f345b6f0fdd0.txt:134-139, seeds/002_fe5bbf9b65554f16.txt:163
    """
    notes = {2: 294912, 1: 409600}  # 000:136: 3x3x128x128x2 and 5x5x128x128
    rows = [_row(128, 3, 2), _row(128, 5, 1)]
    two, one = rows
    checks = [two["params"] == notes[2], one["params"] == notes[1], two["receptive field"] == one["receptive field"] == 5]
    return ClaimResult(rows, verdict_of(checks),
                       f"two 3x3: {two['params']:,} vs one 5x5: {one['params']:,} weights "
                       f"({one['params'] / two['params']:.2f}x), both see {one['receptive field']}x{one['receptive field']}")


@claim("three_3x3_vs_7x7")
def three_3x3_vs_7x7(budget: Budget) -> ClaimResult:
    """Three stacked 3x3 convolutions replace one 7x7: 27C^2 vs 49C^2 parameters, same field, three
    non-linearities instead of one (the heading at 001:329 says 'two 3x3'; the formula is for three).

    Measures: weights of real nn.Conv2d stacks (bias=False) at several C, receptive field by walking them
    Notes: seeds/001_ad955026876a85d8.txt:327-355, seeds/002_fe5bbf9b65554f16.txt:164
    """
    channels = (64, 128) if budget == "small" else (64, 128, 256, 512)
    rows = [_row(c, k, d) for c in channels for k, d in ((3, 3), (7, 1))]
    checks = []
    for three, seven in zip(rows[::2], rows[1::2]):
        checks += [three["params / C^2"] == 27, seven["params / C^2"] == 49,
                   three["receptive field"] == seven["receptive field"] == 7]
    three, seven = rows[2], rows[3]
    return ClaimResult(rows, verdict_of(checks),
                       f"at C=128 three 3x3: {three['params']:,} = 27C^2, one 7x7: {seven['params']:,} = 49C^2 "
                       f"({seven['params'] / three['params']:.2f}x), both see 7x7")
