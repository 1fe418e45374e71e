"""AlexNet (Krizhevsky et al. 2012).

``alexnet``: torchvision's single-column layout (64-192-384-256-256 channels; 61,100,840 parameters),
so its ImageNet weights load unchanged. ``alexnet_lrn``: the paper's original network: 96-256-384-
384-256 channels, local response normalisation after conv1 and conv2, and the two-GPU column split
kept as grouped convolutions (conv2, conv4, conv5 see only their own column's half; 60,965,224
parameters, the paper's "60 million").
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models import alexnet as tv

from ._registry import BackboneSpec, register_backbone, torchvision_spec


class AlexNetLRN(nn.Module):
    """The 2012 paper's AlexNet, in torchvision's layout (``features``, ``avgpool``, ``classifier``)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        lrn = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.LocalResponseNorm(**lrn),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=2),
            nn.ReLU(inplace=True),
            nn.LocalResponseNorm(**lrn),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(256, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def _split(model: nn.Module) -> tuple[list, nn.Module]:
    """Stages end where the resolution halves: conv1 (stride 4), then each max pooling."""
    layers = list(model.features)
    pools = [i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]
    first_relu = 1
    bounds = [first_relu + 1, pools[1], pools[2], len(layers)]
    # stage 1 = conv1 + ReLU; stage 2 = (LRN) pool1 .. conv2 + ReLU (LRN); stage 3 = pool2 .. conv5;
    # stage 4 = pool3.
    stages, start = [], 0
    for i, end in enumerate(bounds):
        chunk = layers[start:end]
        convs = [m for m in layers[:end] if isinstance(m, nn.Conv2d)]
        stages.append((f"stage{i + 1}", nn.Sequential(*chunk), convs[-1].out_channels, 4 * 2**i))
        start = end
    head = nn.Sequential(model.avgpool, nn.Flatten(1), model.classifier)
    return stages, head


register_backbone(torchvision_spec("alexnet", tv, _split, "features.0", "AlexNet_Weights"))
register_backbone(
    BackboneSpec(name="alexnet_lrn", make_model=lambda n: AlexNetLRN(n), split=_split, first_conv="features.0")
)
