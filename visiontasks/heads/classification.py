"""Classification heads on backbone features (no Lightning here)."""

from __future__ import annotations

from torch import Tensor, nn


class LinearHead(nn.Module):
    """Global average pooling + one linear layer: ``[N, C, h, w] -> [N, num_classes]``."""

    def __init__(self, channels: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(self.pool(x).flatten(1)))


class DeepestFeature(nn.Module):
    """A backbone returning only its deepest feature map ``[N, C, h, w]`` (for :class:`LinearHead`)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x)[self.backbone.out_features[-1]]
