"""MobileNet v1: depthwise separable vs standard convolution, and the network's totals."""

from __future__ import annotations

import math

import torch
from torch import nn

from ._count import canonical_on_meta, mult_adds, n_params
from ._registry import Budget, ClaimResult, claim, verdict_of

PAPER = "Howard et al. 2017, section 3.1 (8 to 9 times less computation for 3x3) and Table 8 (4.2M, 569M)"


def standard(m: int, n: int, stride: int) -> nn.Conv2d:
    """One 3x3 convolution, ``m`` -> ``n`` channels, no bias (the paper's cost formula has none)."""
    return nn.Conv2d(m, n, 3, stride, padding=1, bias=False)


def separable(m: int, n: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3 (``groups=m``) then pointwise 1x1, no bias, no BatchNorm."""
    return nn.Sequential(nn.Conv2d(m, m, 3, stride, padding=1, groups=m, bias=False), nn.Conv2d(m, n, 1, bias=False))


def block_inputs(size: int = 224) -> list[tuple[int, int, int, int]]:
    """``(in channels, out channels, stride, input side)`` of each depthwise-separable block of our
    mobilenet_v1 at a ``size`` input, by a forward pass on the meta device."""
    from visiontasks.backbones.mobilenet import DepthwiseSeparable

    model = canonical_on_meta("mobilenet_v1")
    x = torch.empty(1, 3, size, size, device="meta")
    out = []
    for block in model.features:
        if isinstance(block, DepthwiseSeparable):
            out.append((x.shape[1], block.out_channels, block.stride, x.shape[-1]))
        x = block(x)
    return out


@claim("depthwise_separable")
def depthwise_separable(budget: Budget) -> ClaimResult:
    """A 3x3 depthwise separable convolution costs 1/N + 1/9 of a standard one: 8 to 9 times less computation
    (the notes: far less computation and memory; the 8-9x is the MobileNet paper's).

    Measures: params and multiply-adds (torchinfo) of a real standard nn.Conv2d vs depthwise + pointwise
    nn.Conv2d pair, at each of mobilenet_v1's 13 blocks at 224, and summed over them
    Paper: Howard et al. 2017, section 3.1 (8 to 9 times less computation for 3x3) and Table 8 (4.2M, 569M)
    Notes: seeds/002_fe5bbf9b65554f16.txt:208-210
    """
    rows, std_total, sep_total = [], 0, 0
    with torch.device("meta"):
        for i, (m, n, stride, side) in enumerate(block_inputs()):
            std, sep = standard(m, n, stride), separable(m, n, stride)
            s_macs, d_macs = mult_adds(std, (m, side, side)), mult_adds(sep, (m, side, side))
            std_total, sep_total = std_total + s_macs, sep_total + d_macs
            rows.append({"block": i + 1, "in": m, "out": n, "stride": stride, "input side": side,
                         "standard params": n_params(std), "separable params": n_params(sep),
                         "standard mult-adds": s_macs, "separable mult-adds": d_macs,
                         "ratio": round(s_macs / d_macs, 2), "paper 1/(1/N+1/9)": round(1 / (1 / n + 1 / 9), 2)})
    total = round(std_total / sep_total, 2)
    rows.append({"block": "all 13", "in": "", "out": "", "stride": "", "input side": "",
                 "standard params": sum(r["standard params"] for r in rows),
                 "separable params": sum(r["separable params"] for r in rows),
                 "standard mult-adds": std_total, "separable mult-adds": sep_total, "ratio": total,
                 "paper 1/(1/N+1/9)": ""})
    ratios = [r["ratio"] for r in rows[:-1]]
    n_min = math.ceil(1 / (1 / 8 - 1 / 9))  # 1/(1/N + 1/9) >= 8 from this N on
    below = ", ".join(f"block {r['block']}, N={r['out']}" for r in rows[:-1] if r["ratio"] < 8) or "none"
    return ClaimResult(rows, verdict_of([8 <= r <= 9 for r in ratios + [total]]),
                       f"standard / separable multiply-adds {total}x over the 13 blocks, from {min(ratios)}x to "
                       f"{max(ratios)}x per block: below 8x where N < {n_min} ({below}), as 1/(1/N+1/9) predicts")


@claim("mobilenet_v1_total")
def mobilenet_v1_total(budget: Budget) -> ClaimResult:
    """MobileNet v1 (1.0, 224) has 4.2 million parameters and 569 million multiply-adds (the notes give no
    figure: the MobileNet paper's).

    Measures: parameters and multiply-adds (torchinfo, 1x3x224x224) of the registered mobilenet_v1 (BatchNorm
    included)
    Paper: Howard et al. 2017, section 3.1 (8 to 9 times less computation for 3x3) and Table 8 (4.2M, 569M)
    Notes: seeds/002_fe5bbf9b65554f16.txt:208-210
    """
    model = canonical_on_meta("mobilenet_v1")
    n, macs = n_params(model), mult_adds(model, (3, 224, 224))
    rows = [{"network": "mobilenet_v1", "params": n, "millions": round(n / 1e6, 1), "paper params": "4.2M",
             "mult-adds": macs, "mult-adds (M)": round(macs / 1e6), "paper mult-adds": "569M"}]
    checks = [round(n / 1e6, 1) == 4.2, round(macs / 1e6) == 569]
    return ClaimResult(rows, verdict_of(checks),
                       f"{n:,} parameters ({n / 1e6:.1f}M), {macs / 1e6:.1f}M multiply-adds at 224 "
                       "(torchinfo counts BatchNorm and the FC layer too)")
