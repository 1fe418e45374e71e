"""ResNet-18/34/50/101/152 (He et al. 2016): torchvision's definition, split into five stages."""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet as tv

from ._registry import register_backbone, torchvision_spec


def _split(model: tv.ResNet) -> tuple[list, nn.Module]:
    expansion = model.layer1[0].expansion
    stages = [
        ("stem", nn.Sequential(model.conv1, model.bn1, model.relu), 64, 2),
        ("layer1", nn.Sequential(model.maxpool, model.layer1), 64 * expansion, 4),
        ("layer2", model.layer2, 128 * expansion, 8),
        ("layer3", model.layer3, 256 * expansion, 16),
        ("layer4", model.layer4, 512 * expansion, 32),
    ]
    head = nn.Sequential(model.avgpool, nn.Flatten(1), model.fc)
    return stages, head


for _depth in (18, 34, 50, 101, 152):
    register_backbone(torchvision_spec(f"resnet{_depth}", getattr(tv, f"resnet{_depth}"), _split, "conv1",
                                       f"ResNet{_depth}_Weights"))
