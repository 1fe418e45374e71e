"""Receptive fields computed by walking a module's layers (kernel, stride, dilation), no forward.

A field is ``(size, jump)``: one output cell sees ``size`` x ``size`` input pixels and neighbouring
cells are ``jump`` pixels apart. A layer of kernel k, stride s, dilation d maps it to
``(size + d (k - 1) jump, jump s)``. Parallel branches (an Inception block) take the largest field;
a residual block's field is its main path's (the shortcut sees less).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from torchvision.models.googlenet import Inception
from torchvision.models.resnet import BasicBlock, Bottleneck

_WINDOWED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


@dataclass(frozen=True)
class Field:
    """``size``: receptive field side in input pixels; ``jump``: distance between output cells."""

    size: int = 1
    jump: int = 1


def _first(v: int | tuple[int, ...]) -> int:
    return v if isinstance(v, int) else v[0]


def through_layer(field: Field, kernel: int, stride: int = 1, dilation: int = 1) -> Field:
    """The field after one windowed layer."""
    return Field(field.size + dilation * (kernel - 1) * field.jump, field.jump * stride)


def walk(module: nn.Module, field: Field = Field()) -> Field:
    """The field after ``module`` (applied to an input whose cells have ``field``)."""
    if isinstance(module, _WINDOWED):
        dilation = _first(getattr(module, "dilation", 1))
        return through_layer(field, _first(module.kernel_size), _first(module.stride), dilation)
    if isinstance(module, Inception):
        branches = [walk(b, field) for b in (module.branch1, module.branch2, module.branch3, module.branch4)]
        if len({b.jump for b in branches}) != 1:
            raise ValueError("Inception branches with different strides")
        return max(branches, key=lambda b: b.size)
    children = module.named_children()
    if isinstance(module, (BasicBlock, Bottleneck)):
        children = ((n, c) for n, c in children if n != "downsample")
    for _, child in children:
        field = walk(child, field)
    return field
