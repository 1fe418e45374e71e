"""Counting helpers: parameters of real modules, multiply-adds with torchinfo, models on the meta
device (no memory, no initialisation time: a parameter count needs only the shapes)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def n_params(module: nn.Module, weights_only: bool = False) -> int:
    """Parameters of ``module``; ``weights_only`` leaves out biases and normalisation parameters
    (the notes count convolution and FC weights only)."""
    if not weights_only:
        return sum(p.numel() for p in module.parameters())
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def mult_adds(module: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-adds of one forward pass of ``module`` on a ``[1, *input_shape]`` input, as torchinfo
    counts them (a convolution: weights x output positions, plus its bias; BatchNorm: its parameters).
    A module on the meta device is run there (shapes only, instant)."""
    from torchinfo import summary

    device = next(module.parameters()).device
    stats = summary(module.eval(), input_size=(1, *input_shape), verbose=0, device=device)
    return int(stats.total_mult_adds)


def classifier_on_meta(name: str, num_classes: int = 1000) -> nn.Module:
    """The registered backbone ``name`` with its paper's head, built on the meta device."""
    from visiontasks.backbones import build_classifier

    with torch.device("meta"):
        return build_classifier(name, num_classes)


def canonical_on_meta(name: str, num_classes: int = 1000) -> nn.Module:
    """The registered backbone's canonical model (torchvision's layout, before the split into
    stages and head), built on the meta device."""
    from visiontasks.backbones import get_spec

    with torch.device("meta"):
        return get_spec(name).make_model(num_classes)
