"""MobileNet v1 (Howard et al. 2017, depthwise separable convolutions) and v2 (Sandler et al. 2018).

v2 is torchvision's definition (3,504,872 parameters with the 1000-class head). v1 has no torchvision
counterpart; it is written in the same style (``features`` of ``Conv2dNormActivation`` blocks, then
``classifier``): a 3x3 convolution, 13 depthwise-separable blocks (depthwise 3x3 + BN + ReLU, then
pointwise 1x1 + BN + ReLU), global average pooling and a fully-connected layer (4,231,976 parameters).
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models import mobilenet_v2 as tv_v2
from torchvision.ops.misc import Conv2dNormActivation

from ._registry import BackboneSpec, register_backbone, torchvision_spec

# (output channels, stride) of the 13 depthwise-separable blocks (Table 1 of the paper).
V1_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


class DepthwiseSeparable(nn.Sequential):
    """Depthwise 3x3 (one filter per channel) followed by a pointwise 1x1 convolution."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__(
            Conv2dNormActivation(in_ch, in_ch, 3, stride, groups=in_ch),
            Conv2dNormActivation(in_ch, out_ch, 1),
        )
        self.out_channels = out_ch
        self.stride = stride


class MobileNetV1(nn.Module):
    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2) -> None:
        super().__init__()
        c = lambda ch: max(8, int(ch * width_mult))  # noqa: E731
        layers: list[nn.Module] = [Conv2dNormActivation(3, c(32), 3, 2)]
        in_ch = c(32)
        for out_ch, stride in V1_BLOCKS:
            layers.append(DepthwiseSeparable(in_ch, c(out_ch), stride))
            in_ch = c(out_ch)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_ch, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def _stride_of(block: nn.Module) -> int:
    for m in block.modules():
        if isinstance(m, nn.Conv2d):
            s = m.stride[0]
            if s > 1:
                return s
    return 1


def _out_channels(block: nn.Module) -> int:
    return [m for m in block.modules() if isinstance(m, nn.Conv2d)][-1].out_channels


def _split_by_stride(features: nn.Sequential) -> list:
    """Group ``features`` into stages; a stage ends right before the next stride-2 block."""
    stages, current, stride = [], [], 1
    blocks = list(features)
    for i, block in enumerate(blocks):
        stride *= _stride_of(block)
        current.append(block)
        nxt = blocks[i + 1] if i + 1 < len(blocks) else None
        if nxt is None or _stride_of(nxt) > 1:
            stages.append((f"stage{len(stages) + 1}", nn.Sequential(*current), _out_channels(block), stride))
            current = []
    return stages


def _split(model: nn.Module) -> tuple[list, nn.Module]:
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), model.classifier)
    return _split_by_stride(model.features), head


register_backbone(BackboneSpec(name="mobilenet_v1", make_model=MobileNetV1, split=_split, first_conv="features.0.0"))
register_backbone(torchvision_spec("mobilenet_v2", tv_v2, _split, "features.0.0", "MobileNet_V2_Weights"))
