"""LeNet-5 (LeCun et al. 1998): C1 conv 5x5 (6) - S2 pool - C3 conv 5x5 (16) - S4 pool - C5 (120) -
F6 (84) - output; tanh activations and average pooling as in the paper (61,706 parameters with 10
classes). C1 is padded by 2 so a 28x28 digit is laid out like the paper's 32x32 input; C5, a 5x5
convolution over the 5x5 S4 maps, is written as the fully-connected layer it equals, after an
adaptive pooling to 5x5 so other input sizes work too.
"""

from __future__ import annotations

from torch import Tensor, nn

from ._registry import BackboneSpec, register_backbone


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10, in_chans: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 6, kernel_size=5, padding=2),  # C1
            nn.Tanh(),
            nn.AvgPool2d(2),  # S2
            nn.Conv2d(6, 16, kernel_size=5),  # C3
            nn.Tanh(),
            nn.AvgPool2d(2),  # S4
        )
        self.avgpool = nn.AdaptiveAvgPool2d((5, 5))
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120),  # C5
            nn.Tanh(),
            nn.Linear(120, 84),  # F6
            nn.Tanh(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def _split(model: LeNet5) -> tuple[list, nn.Module]:
    f = model.features
    stages = [
        ("c1_s2", nn.Sequential(f[0], f[1], f[2]), 6, 2),
        ("c3_s4", nn.Sequential(f[3], f[4], f[5]), 16, 4),
    ]
    head = nn.Sequential(model.avgpool, nn.Flatten(1), model.classifier)
    return stages, head


register_backbone(
    BackboneSpec(
        name="lenet5",
        make_model=lambda n: LeNet5(n, in_chans=1),
        split=_split,
        first_conv="features.0",
        default_in_chans=1,
        input_size=28,
    )
)
