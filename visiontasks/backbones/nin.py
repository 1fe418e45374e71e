"""Network in Network (Lin, Chen & Yan 2013): MLPconv blocks and global average pooling, no FC layer.

An MLPconv block is a k x k convolution followed by 1x1 convolutions (the "cascaded cross-channel
parametric pooling" of the authors' Caffe models, ``cccp``), each with a ReLU. The network's last 1x1
convolution has one channel per class; its maps are averaged over the image (global average
pooling) into the logits. Layouts are the authors' released Caffe models; pooling uses Caffe's
rounding up (``ceil_mode``), so a 32x32 CIFAR image gives 16x16 then 8x8 maps, and a 224x224 ImageNet
crop 54 -> 27 -> 13 -> 6.

``nin_cifar`` (CIFAR-10 model, 966,986 parameters with 10 classes, the paper's "0.97M")::

    mlpconv1: conv 5x5/1 pad 2 (192) - 1x1 (160) - 1x1 (96) - max pool 3/2      96 ch, stride 2
    mlpconv2: dropout 0.5 - conv 5x5 pad 2 (192) - 1x1 (192) - 1x1 (192) - avg pool 3/2
                                                                                192 ch, stride 4
    mlpconv3: dropout 0.5 - conv 3x3 pad 1 (192) - 1x1 (192)                   192 ch, stride 4
    head:     1x1 (num_classes) - global average pool

``nin`` (ImageNet model, 7,595,176 parameters with 1000 classes, the authors' 29 MB model)::

    mlpconv1: conv 11x11/4 (96) - 1x1 (96) - 1x1 (96) - max pool 3/2             96 ch, stride 8
    mlpconv2: conv 5x5 pad 2 (256) - 1x1 (256) - 1x1 (256) - max pool 3/2      256 ch, stride 16
    mlpconv3: conv 3x3 pad 1 (384) - 1x1 (384) - 1x1 (384) - max pool 3/2      384 ch, stride 32
    mlpconv4: dropout 0.5 - conv 3x3 pad 1 (1024) - 1x1 (1024)                1024 ch, stride 32
    head:     1x1 (num_classes) - global average pool

The backbone's stages are the MLPconv blocks (each with the pooling that ends it); the last block's
class-count 1x1 convolution plus the global average pooling are the head, so the deepest feature map
is the last block's 1x1 features, independent of the class count. Dropout sits at the start of the
block it feeds, so stage outputs are never dropped.

One departure from the Caffe models: they also put a ReLU on the class maps (``relu_cccp6``,
``relu12``), which makes every logit >= 0. Trained with AdamW (lr 1e-3) that ReLU killed all ten class
maps of ``nin_cifar`` on digits within 10 steps (every logit 0, loss stuck at ln 10 = 2.3026), so the
class maps here are averaged as they are, the paper's own description ("the resulting vector is fed
directly into the softmax layer"). It has no parameters: the counts are unchanged.

Strides: ``nin`` offers 8, 16 and 32, so FCN-32s/16s/8s and the detectors accept it. ``nin_cifar``'s
deepest stride is 4 (like LeNet-5): it cannot host an FCN, which needs stride-8/16/32 features
(``FCNHead``/``SegmentationTask`` raise an error listing the strides it offers); the detectors accept
it (they pool the deepest output with stride <= 16).
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from ._registry import BackboneSpec, register_backbone


class MLPConv(nn.Sequential):
    """``conv k x k (widths[0]) - ReLU - [1x1 (w) - ReLU for w in widths[1:]]``:
    ``[N, in_chans, H, W] -> [N, widths[-1], H', W']`` with ``H' = (H + 2 pad - k) / stride + 1``."""

    def __init__(
        self, in_chans: int, widths: Sequence[int], kernel_size: int, stride: int = 1, padding: int = 0
    ) -> None:
        layers: list[nn.Module] = [nn.Conv2d(in_chans, widths[0], kernel_size, stride, padding), nn.ReLU(inplace=True)]
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(cin, cout, kernel_size=1), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class NiN(nn.Module):
    """A Network in Network classifier: ``features`` (MLPconv blocks, pools, dropouts) then
    ``classifier`` (1x1 conv to ``num_classes`` - global average pool - flatten).

    ``[N, 3, H, W] -> logits [N, num_classes]``; any input size the poolings allow.
    """

    def __init__(self, features: nn.Sequential, channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = features
        self.classifier = nn.Sequential(
            nn.Conv2d(channels, num_classes, kernel_size=1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # He initialisation keeps the signal's scale through the 8-11 ReLU convolutions
                # without batch normalisation (the authors tuned per-layer Gaussian stds instead).
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        # the class convolution starts small (std 0.01 as the authors' cccp8): first logits ~ 0
        nn.init.normal_(self.classifier[0].weight, std=0.01)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def _max_pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)


def nin_cifar(num_classes: int = 10, in_chans: int = 3, dropout: float = 0.5) -> NiN:
    """The authors' CIFAR-10 model (three MLPconv blocks; 966,986 parameters with 10 classes)."""
    features = nn.Sequential(
        MLPConv(in_chans, (192, 160, 96), kernel_size=5, padding=2),
        _max_pool(),
        nn.Dropout(dropout),
        MLPConv(96, (192, 192, 192), kernel_size=5, padding=2),
        nn.AvgPool2d(kernel_size=3, stride=2, ceil_mode=True),
        nn.Dropout(dropout),
        MLPConv(192, (192, 192), kernel_size=3, padding=1),
    )
    return NiN(features, 192, num_classes)


def nin_imagenet(num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> NiN:
    """The authors' ImageNet model (four MLPconv blocks; 7,595,176 parameters with 1000 classes)."""
    features = nn.Sequential(
        MLPConv(in_chans, (96, 96, 96), kernel_size=11, stride=4),
        _max_pool(),
        MLPConv(96, (256, 256, 256), kernel_size=5, padding=2),
        _max_pool(),
        MLPConv(256, (384, 384, 384), kernel_size=3, padding=1),
        _max_pool(),
        nn.Dropout(dropout),
        MLPConv(384, (1024, 1024), kernel_size=3, padding=1),
    )
    return NiN(features, 1024, num_classes)


def _split(model: NiN) -> tuple[list, nn.Module]:
    """One stage per MLPconv block, ending after its pooling (dropouts start the next block).

    The stride doubles at each pooling and, for the first block, by the first convolution's stride.
    """
    stages, chunk, stride = [], [], 1
    layers = list(model.features)
    for i, m in enumerate(layers):
        chunk.append(m)
        if isinstance(m, MLPConv):
            stride *= m[0].stride[0]
            channels = m[-2].out_channels
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            stride *= m.stride
        ends_block = i + 1 == len(layers) or isinstance(layers[i + 1], (MLPConv, nn.Dropout))
        if ends_block and not isinstance(m, nn.Dropout):
            stages.append((f"mlpconv{len(stages) + 1}", nn.Sequential(*chunk), channels, stride))
            chunk = []
    return stages, model.classifier


register_backbone(BackboneSpec(name="nin_cifar", make_model=nin_cifar, split=_split, first_conv="features.0.0",
                               input_size=32))
register_backbone(
    BackboneSpec(name="nin", make_model=lambda n: nin_imagenet(n), split=_split, first_conv="features.0.0")
)
