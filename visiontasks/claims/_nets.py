"""Small networks for the training claims: one plain CNN builder whose switches are the thing each
claim compares (activation, BatchNorm, dropout), so the arms differ in that switch only."""

from __future__ import annotations

from typing import Callable

from torch import nn


def small_cnn(image: int, width: int = 16, convs_per_stage: int = 1, stages: int = 3,
              act: Callable[[], nn.Module] = nn.ReLU, bn: bool = False, fc_hidden: int = 0,
              dropout: float = 0.0, num_classes: int = 10) -> nn.Sequential:
    """``stages`` stages of ``convs_per_stage`` 3x3 convolutions (``width`` x 2**stage channels,
    ``act`` after each, BatchNorm before it when ``bn``) each ending in a 2x2 max pooling; then either
    global average pooling and one FC layer (``fc_hidden=0``) or AlexNet's head: flatten, [dropout],
    FC ``fc_hidden``, act, [dropout], FC ``fc_hidden``, act, FC classes. Input ``[N, 3, image, image]``."""
    layers: list[nn.Module] = []
    c_in = 3
    for stage in range(stages):
        c = width * 2**stage
        for _ in range(convs_per_stage):
            layers.append(nn.Conv2d(c_in, c, 3, padding=1, bias=not bn))
            layers += [nn.BatchNorm2d(c), act()] if bn else [act()]
            c_in = c
        layers.append(nn.MaxPool2d(2))
    if not fc_hidden:
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(c_in, num_classes))
    flat = c_in * (image // 2**stages) ** 2
    head = [nn.Flatten(1), nn.Dropout(dropout), nn.Linear(flat, fc_hidden), act(), nn.Dropout(dropout),
            nn.Linear(fc_hidden, fc_hidden), act(), nn.Linear(fc_hidden, num_classes)]
    return nn.Sequential(*layers, *head)


def steps_text(steps: int | None, budget_steps: int) -> str:
    """``steps`` for a table cell, or "not in N" when the threshold was never reached."""
    return str(steps) if steps is not None else f"not in {budget_steps}"
