"""GoogLeNet / Inception v1 (Szegedy et al. 2015): torchvision's definition without the auxiliary
classifiers (6,624,904 parameters with the 1000-class head), split into five stages.

torchvision's ImageNet weights for GoogLeNet were ported from TensorFlow and expect its
``transform_input`` re-normalisation; when those weights are requested by name we keep that
transform as the first layer of the stem, so the backbone sees the same numbers as torchvision's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.googlenet import GoogLeNet

from visiontasks.preprocessing import IMAGENET_MEAN, IMAGENET_STD

from ._registry import BackboneSpec, register_backbone


class _TransformInput(nn.Module):
    """torchvision's GoogLeNet ``_transform_input`` (ImageNet -> [-1, 1] per channel)."""

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] != 3:
            return x
        # per channel x * std / 0.5 + (mean - 0.5) / 0.5: ImageNet-normalised -> TF's [-1, 1]
        return torch.cat(
            [x[:, c:c + 1] * (s / 0.5) + (m - 0.5) / 0.5 for c, (m, s) in enumerate(zip(IMAGENET_MEAN, IMAGENET_STD))],
            1,
        )


def _make(num_classes: int) -> GoogLeNet:
    return GoogLeNet(num_classes=num_classes, aux_logits=False, transform_input=False, init_weights=True)


def _split(m: GoogLeNet) -> tuple[list, nn.Module]:
    stem = [m.conv1] if not m.transform_input else [_TransformInput(), m.conv1]
    stages = [
        ("stem", nn.Sequential(*stem), 64, 2),
        ("stage2", nn.Sequential(m.maxpool1, m.conv2, m.conv3), 192, 4),
        ("stage3", nn.Sequential(m.maxpool2, m.inception3a, m.inception3b), 480, 8),
        (
            "stage4",
            nn.Sequential(m.maxpool3, m.inception4a, m.inception4b, m.inception4c, m.inception4d, m.inception4e),
            832,
            16,
        ),
        ("stage5", nn.Sequential(m.maxpool4, m.inception5a, m.inception5b), 1024, 32),
    ]
    head = nn.Sequential(m.avgpool, nn.Flatten(1), m.dropout, m.fc)
    return stages, head


register_backbone(
    BackboneSpec(
        name="googlenet",
        make_model=_make,
        split=_split,
        first_conv="conv1.conv",
        tv_weights="GoogLeNet_Weights",
    )
)
