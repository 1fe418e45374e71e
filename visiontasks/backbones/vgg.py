"""VGG configurations A, A-LRN, B, C, D, E (Simonyan & Zisserman 2015, Table 1).

Built on torchvision's ``VGG`` class so its ImageNet weights load unchanged into A/B/D/E (vgg11/13/
16/19, also with BatchNorm). A-LRN adds local response normalisation after the first convolution; C
adds a 1x1 convolution at the end of blocks 3, 4 and 5. Each pooling closes a stage (strides 2..32).
Registered names: ``vgg11``/``vgg_a``, ``vgg11_lrn``/``vgg_a_lrn``, ``vgg13``/``vgg_b``,
``vgg16_c``/``vgg_c``, ``vgg16``/``vgg_d``, ``vgg19``/``vgg_e`` and ``vgg11_bn``/``vgg13_bn``/
``vgg16_bn``/``vgg19_bn``.
"""

from __future__ import annotations

from typing import Union

from torch import nn
from torchvision.models.vgg import VGG

from ._registry import BackboneSpec, register_backbone

# An int is a 3x3 convolution with that many outputs, "1:N" a 1x1 convolution, "M" max pooling,
# "LRN" local response normalisation (AlexNet's constants, as the VGG paper used).
Cfg = list[Union[int, str]]
CFGS: dict[str, Cfg] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, "1:256", "M", 512, 512, "1:512", "M", 512, 512, "1:512", "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_layers(cfg: Cfg, batch_norm: bool) -> nn.Sequential:
    """torchvision's ``make_layers`` plus the LRN and 1x1 entries (same indices for A/B/D/E)."""
    layers: list[nn.Module] = []
    in_ch = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        elif v == "LRN":
            layers.append(nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0))
        else:
            k = 3
            if isinstance(v, str):
                k, v = 1, int(v.split(":")[1])
            conv = nn.Conv2d(in_ch, v, kernel_size=k, padding=k // 2)
            layers += [conv, nn.BatchNorm2d(v), nn.ReLU(True)] if batch_norm else [conv, nn.ReLU(True)]
            in_ch = v
    return nn.Sequential(*layers)


def _split(model: VGG) -> tuple[list, nn.Module]:
    stages, current, channels = [], [], 3
    for layer in model.features:
        current.append(layer)
        if isinstance(layer, nn.Conv2d):
            channels = layer.out_channels
        if isinstance(layer, nn.MaxPool2d):
            i = len(stages) + 1
            stages.append((f"stage{i}", nn.Sequential(*current), channels, 2**i))
            current = []
    head = nn.Sequential(model.avgpool, nn.Flatten(1), model.classifier)
    return stages, head


def _register(name: str, cfg: str, bn: bool, tv_weights: str | None, aliases: tuple[str, ...] = ()) -> None:
    register_backbone(
        BackboneSpec(
            name=name,
            make_model=lambda k, c=cfg, b=bn: VGG(make_layers(CFGS[c], b), num_classes=k),
            split=_split,
            first_conv="features.0",
            tv_weights=tv_weights,
        ),
        aliases,
    )


_register("vgg11", "A", False, "VGG11_Weights", ("vgg_a",))
_register("vgg11_lrn", "A-LRN", False, None, ("vgg_a_lrn",))
_register("vgg13", "B", False, "VGG13_Weights", ("vgg_b",))
_register("vgg16_c", "C", False, None, ("vgg_c",))
_register("vgg16", "D", False, "VGG16_Weights", ("vgg_d",))
_register("vgg19", "E", False, "VGG19_Weights", ("vgg_e",))
_register("vgg11_bn", "A", True, "VGG11_BN_Weights")
_register("vgg13_bn", "B", True, "VGG13_BN_Weights")
_register("vgg16_bn", "D", True, "VGG16_BN_Weights")
_register("vgg19_bn", "E", True, "VGG19_BN_Weights")
