"""DenseNet-121/161/169/201 (Huang et al. 2017): torchvision's definition, split into five stages.

The stride-32 stage ends with the final BatchNorm and the ReLU that torchvision applies in
``forward``, so every output is post-activation and ``head(last)`` equals torchvision's logits.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import densenet as tv

from ._registry import register_backbone, torchvision_spec


def _split(model: tv.DenseNet) -> tuple[list, nn.Module]:
    f = model.features
    c1 = f.conv0.out_channels
    c2 = f.transition1.conv.in_channels
    c3 = f.transition2.conv.in_channels
    c4 = f.transition3.conv.in_channels
    c5 = f.norm5.num_features
    stages = [
        ("stem", nn.Sequential(f.conv0, f.norm0, f.relu0), c1, 2),
        ("block1", nn.Sequential(f.pool0, f.denseblock1), c2, 4),
        ("block2", nn.Sequential(f.transition1, f.denseblock2), c3, 8),
        ("block3", nn.Sequential(f.transition2, f.denseblock3), c4, 16),
        ("block4", nn.Sequential(f.transition3, f.denseblock4, f.norm5, nn.ReLU(inplace=True)), c5, 32),
    ]
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), model.classifier)
    return stages, head


for _depth in (121, 161, 169, 201):
    register_backbone(torchvision_spec(f"densenet{_depth}", getattr(tv, f"densenet{_depth}"), _split,
                                       "features.conv0", f"DenseNet{_depth}_Weights"))
