"""Fully convolutional: fully connected layers copied into convolutions keep the output's positions
and take any input size; the registered FCN returns a map the size of whatever it is given."""

from __future__ import annotations

import torch
from torch import nn

from visiontasks.heads.fcn import convolutionize_

from ._nets import small_cnn
from ._registry import Budget, ClaimResult, claim, verdict_of

TRAIN_SIZE = 32  # the classifier's input side: its first FC layer reads the 4 x 4 map of this size


def convolutionized(net: nn.Sequential) -> nn.Sequential:
    """``net`` (convolutions, then flatten + FC layers, as :func:`small_cnn` with ``fc_hidden``)
    with each FC layer copied into a convolution: the first into a ``k x k`` one over the map it
    flattened, the others into ``1 x 1`` ones (our :func:`~visiontasks.heads.fcn.convolutionize_`)."""
    layers = list(net)
    cut = next(i for i, m in enumerate(layers) if isinstance(m, nn.Flatten))
    body = layers[:cut]
    channels = next(m.out_channels for m in reversed(body) if isinstance(m, nn.Conv2d))
    head: list[nn.Module] = []
    first = True
    for m in layers[cut + 1:]:
        if isinstance(m, nn.Linear):
            k = round((m.in_features / channels) ** 0.5) if first else 1
            conv = nn.Conv2d(channels if first else m.in_features, m.out_features, k)
            if not convolutionize_(conv, m):
                raise ValueError(f"{m} does not match a {k}x{k} convolution")
            head.append(conv)
            first = False
        else:
            head.append(m)
    return nn.Sequential(*body, *head)


def _run(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor | None, str]:
    try:
        out = model(x)
    except RuntimeError as err:  # the FC layer's fixed input length
        return None, f"refused: {str(err).splitlines()[0]}"
    return out, "x".join(str(d) for d in out.shape[1:])


@claim("fcn_any_size")
def fcn_any_size(budget: Budget) -> ClaimResult:
    """A fully convolutional network puts convolutions (1 x 1) where the fully connected layers were: the output
    keeps the positions (a map of scores, not one vector) and the input may have any size; a larger input
    gives a larger output map.

    Measures: a 3-stage CNN classifier with an AlexNet-style head (flatten, FC 64, FC 64, FC 10; 32 px input,
    random weights, eval mode) and the same network with its FC layers copied into a 4x4 and two 1x1
    convolutions by the package's convolutionize_: their outputs at 32 px (largest difference) and at larger
    inputs; the registered fcn8s on resnet18 at square and odd input sizes (logits' size vs the input's)
    Paper: Long, Shelhamer & Darrell 2015, section 3.1 (convolutionalization) and Fig. 2
    Notes: seeds/000_4943f345b6f0fdd0.txt:209-222, seeds/003_cd3e64e9312e8605.txt:35-40
    """
    from visiontasks.backbones import build_backbone
    from visiontasks.heads.fcn import FCN, FCNHead

    torch.manual_seed(0)
    fc_net = small_cnn(TRAIN_SIZE, width=8, fc_hidden=64).eval()
    conv_net = convolutionized(fc_net).eval()
    rows, checks = [], []
    with torch.no_grad():
        for side in (TRAIN_SIZE, 48, 64, 96):
            x = torch.randn(2, 3, side, side)
            fc_out, fc_text = _run(fc_net, x)
            conv_out, conv_text = _run(conv_net, x)
            expected = (side - TRAIN_SIZE) // 8 + 1  # the 4x4 convolution slides over the stride-8 map
            diff = ""
            if side == TRAIN_SIZE:
                gap = float((fc_out - conv_out.flatten(1)).abs().max())
                diff, _ = f"{gap:.1e}", checks.append(gap < 1e-5)
            else:
                checks += [fc_out is None, conv_out is not None and conv_out.shape[-2:] == (expected, expected)]
            rows.append({"network": "classifier: FC head vs convolutionized", "input": f"{side}x{side}",
                         "FC head output": fc_text, "convolutional output": conv_text,
                         "max |FC - conv| at the training size": diff})
        body = build_backbone("resnet18")
        fcn = FCN(body, FCNHead(body.feature_info, 3, "fcn8s", fc_channels=0, dropout=0.0)).eval()
        for h, w in ((64, 64), (97, 130), (160, 96)):
            out, text = _run(fcn, torch.randn(1, 3, h, w))
            checks.append(out is not None and tuple(out.shape[-2:]) == (h, w))
            rows.append({"network": "fcn8s (resnet18)", "input": f"{h}x{w}", "FC head output": "",
                         "convolutional output": text, "max |FC - conv| at the training size": ""})
    larger = rows[1:4]
    refused = all(r["FC head output"].startswith("refused") for r in larger)
    sizes = [(r["input"], r["convolutional output"]) for r in rows if r["network"].startswith("fcn8s")]
    return ClaimResult(rows, verdict_of(checks),
                       f"at {TRAIN_SIZE} px the convolutionized classifier gives the FC head's logits (largest "
                       f"difference {rows[0]['max |FC - conv| at the training size']}); at "
                       f"{', '.join(r['input'] for r in larger)} the FC head "
                       f"{'refuses every input' if refused else 'accepts some inputs'} while the convolutional one "
                       f"returns maps of {', '.join(r['convolutional output'] for r in larger)} class scores; fcn8s "
                       f"(resnet18): {', '.join(f'{i} -> {o}' for i, o in sizes)}")
