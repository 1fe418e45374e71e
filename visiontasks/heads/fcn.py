"""FCN decoder (Long, Shelhamer & Darrell, "Fully Convolutional Networks for Semantic Segmentation").

A backbone's classifier is made convolutional (fc6/fc7 become a ``k x k`` and a ``1 x 1``
convolution; for VGG the paper's 7x7 and 1x1), a 1x1 convolution scores every class at stride 32,
and transposed convolutions initialised to bilinear interpolation bring the scores back to the input
resolution. FCN-16s and FCN-8s first fuse (add) 1x1 scores of the stride-16 and stride-8 features
(zero-initialised, as in the paper), so the coarse prediction is refined by finer features.

The stride-8/16/32 features are chosen from the backbone's ``feature_info``; nothing here knows a
backbone's internals. Outputs are cropped (or, for backbones with unpadded convolutions whose maps
fall short of the input, edge-padded) to the exact input size, so any input size works.

No library ships this decoder (torchvision's ``fcn_resnet50`` is a dilated ResNet with a
single bilinear upsampling, not the paper's skip architecture), hence it is written here.
"""

from __future__ import annotations

from typing import Iterable, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visiontasks.errors import InvalidInputError

FCN_VARIANTS: dict[str, tuple[int, ...]] = {
    # variant -> strides of the features it uses, coarse first
    "fcn32s": (32,),
    "fcn16s": (32, 16),
    "fcn8s": (32, 16, 8),
}


class _Info(Protocol):
    name: str
    channels: int
    stride: int


def bilinear_kernel(channels: int, kernel_size: int) -> Tensor:
    """Weights ``[channels, channels, k, k]`` that make a ``ConvTranspose2d`` (stride ``ceil(k/2)``)
    upsample each channel bilinearly on its own (diagonal: channel ``c`` feeds only channel ``c``).

    The FCN reference's ``upsample_filt``: a separable triangle ``1 - |i - centre| / factor``.
    """
    factor = (kernel_size + 1) // 2
    centre = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    pos = torch.arange(kernel_size, dtype=torch.float64)
    tri = 1 - (pos - centre).abs() / factor
    filt = (tri[:, None] * tri[None, :]).float()
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    idx = torch.arange(channels)
    weight[idx, idx] = filt
    return weight


def _diagonal(kernel: Tensor) -> Tensor:
    """``[C, C, k, k]`` -> ``[C, 1, k, k]``: the per-channel filters of a diagonal kernel (the weight
    of the equivalent depthwise transposed convolution)."""
    idx = torch.arange(kernel.shape[0])
    return kernel[idx, idx].unsqueeze(1)


class BilinearUpsample(nn.ConvTranspose2d):
    """``x [N, C, h, w] -> [N, C, (h+3)*f, (w+3)*f]``: a transposed convolution with kernel ``2f``
    and stride ``f``, initialised to bilinear interpolation (the paper's "deconvolution" layer).

    The input is first edge-padded by one cell. Without it the kernel's tails fade out over the
    outer ``f/2`` pixels of the image (the reference implementation hid that fade in its 100-pixel
    input padding); on small maps, e.g. a 2x2 stride-32 map of a 64-pixel crop, that fade covers
    most of the image and even a constant score cannot be represented. Call :meth:`align` on the
    output to crop the padding cell and the ``f/2`` border, so that cell ``i`` lands at the centre
    of output pixels ``[i*f, (i+1)*f)``: at initialisation the result then equals
    ``F.interpolate(x, scale_factor=f, mode="bilinear", align_corners=False)`` everywhere.

    A learnable layer is a full ``C -> C`` transposed convolution (the paper learns it; channels may
    mix). A fixed one (``learnable=False``) is depthwise (``groups=C``): the same result as the
    diagonal full kernel at ``1/C`` of the cost, which matters for many classes (x8 to full size
    with 129 COCO classes would otherwise cost ~22 G multiply-adds for a 640x480 image).
    """

    def __init__(self, channels: int, factor: int, learnable: bool = True) -> None:
        if factor < 2:
            raise InvalidInputError(f"upsampling factor must be >= 2, got {factor}")
        groups = 1 if learnable else channels
        super().__init__(
            channels, channels, kernel_size=2 * factor, stride=factor, groups=groups, bias=False
        )
        self.factor = factor
        with torch.no_grad():
            kernel = bilinear_kernel(channels, 2 * factor)
            self.weight.copy_(_diagonal(kernel) if groups > 1 else kernel)
        self.weight.requires_grad_(learnable)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        # checkpoints written before the fixed layer became depthwise hold the full [C, C, k, k]
        # kernel; its diagonal is this layer's [C, 1, k, k] weight
        key = prefix + "weight"
        w = state_dict.get(key)
        c = self.out_channels
        if self.groups == c > 1 and w is not None and w.shape == (c, c, *self.kernel_size):
            state_dict[key] = _diagonal(w)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        # autocast runs replicate padding in fp32; keep the input's dtype
        x = F.pad(x, (1, 1, 1, 1), mode="replicate").to(x.dtype)
        return super().forward(x, output_size)

    def align(self, y: Tensor, size: Sequence[int]) -> Tensor:
        """Crop ``y`` (this layer's output) to ``size = (H, W)``, skipping the padding cell and the
        ``f/2`` border.

        When the output is too small (backbones with unpadded convolutions, e.g. AlexNet, whose
        last rows/columns do not reach the image border), the last row/column is repeated.
        """
        return crop_or_pad(y, size, self.factor + self.factor // 2)


def crop_or_pad(x: Tensor, size: Sequence[int], offset: int = 0) -> Tensor:
    """``x[..., offset:offset+H, offset:offset+W]``; replicate-pads bottom/right if ``x`` is short."""
    # no int(): under tracing / torch.export the sizes are symbolic, so an exported FCN crops any size
    h, w = size[0], size[1]
    x = x[..., offset : offset + h, offset : offset + w]
    dh, dw = h - x.shape[-2], w - x.shape[-1]
    if dh > 0 or dw > 0:
        # autocast runs replicate padding in fp32; keep the caller's dtype
        x = F.pad(x, (0, dw if dw > 0 else 0, 0, dh if dh > 0 else 0), mode="replicate").to(x.dtype)
    return x


def select_fcn_features(feature_info: Iterable[_Info], variant: str) -> dict[int, _Info]:
    """For each stride ``variant`` needs (32; 32, 16; or 32, 16, 8), the deepest backbone output at
    exactly that stride. Raises a ``ValueError`` naming what the backbone offers when one is missing.
    """
    if variant not in FCN_VARIANTS:
        raise InvalidInputError(f"unknown FCN variant {variant!r}; choose one of {sorted(FCN_VARIANTS)}")
    infos = list(feature_info)
    chosen: dict[int, _Info] = {}
    for stride in FCN_VARIANTS[variant]:
        matches = [f for f in infos if f.stride == stride]
        if not matches:
            offered = ", ".join(f"{f.name} (stride {f.stride})" for f in infos)
            raise InvalidInputError(
                f"{variant} needs backbone features at strides {FCN_VARIANTS[variant]}, but the "
                f"backbone has no stride-{stride} output; it offers: {offered}"
            )
        chosen[stride] = matches[-1]
    return chosen


def convolutionize_(conv: nn.Conv2d, linear: nn.Linear) -> bool:
    """Copy a fully connected layer into an equivalent convolution (the paper's "convolutionalize").

    A ``Linear(C*k*k -> D)`` applied to a flattened ``[C, k, k]`` map is the ``Conv2d(C -> D, k)``
    with the weight reshaped to ``[D, C, k, k]``. Returns ``False`` (and changes nothing) when the
    shapes do not correspond.
    """
    shape = conv.weight.shape
    if linear.weight.shape != (shape[0], shape[1] * shape[2] * shape[3]):
        return False
    with torch.no_grad():
        conv.weight.copy_(linear.weight.view(shape))
        if conv.bias is not None and linear.bias is not None:
            conv.bias.copy_(linear.bias)
    return True


class FCNHead(nn.Module):
    """The FCN decoder on a dict of backbone features.

    Args:
        feature_info: the backbone's ``feature_info`` (records with ``name``, ``channels``,
            ``stride``); the stride-32 (and stride-16/8) outputs are taken from it.
        num_classes: number of classes ``K``.
        variant: ``"fcn32s"``, ``"fcn16s"`` or ``"fcn8s"``.
        fc_channels: width of fc6/fc7; ``0`` scores the stride-32 features directly (as for
            backbones whose classifier is a single linear layer, e.g. ResNet).
        fc_kernel_size: fc6's kernel (7 for VGG, as in the paper; "same" padding, so small inputs
            work without the reference implementation's 100-pixel input padding).
        dropout: dropout after fc6 and fc7 (0.5 in the paper).
        learn_final_upsample: the paper keeps the last (x8/x16/x32) upsampling fixed to bilinear;
            the x2 upsamplings inside the skip path are always learned (bilinear-initialised).

    ``forward(features, size) -> logits [N, K, H, W]`` with ``size = (H, W)`` of the input image.
    """

    def __init__(
        self,
        feature_info: Iterable[_Info],
        num_classes: int,
        variant: str = "fcn8s",
        fc_channels: int = 4096,
        fc_kernel_size: int = 7,
        dropout: float = 0.5,
        learn_final_upsample: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise InvalidInputError(f"num_classes must be >= 1, got {num_classes}")
        if fc_channels < 0 or fc_kernel_size < 1:
            raise InvalidInputError(
                f"fc_channels must be >= 0 and fc_kernel_size >= 1, got {fc_channels}, {fc_kernel_size}"
            )
        self.variant = variant
        self.num_classes = num_classes
        chosen = select_fcn_features(feature_info, variant)
        self.in_features = {s: f.name for s, f in chosen.items()}  # stride -> feature name
        coarse = chosen[32]
        if fc_channels > 0:
            self.fc = nn.Sequential(
                nn.Conv2d(coarse.channels, fc_channels, fc_kernel_size, padding=fc_kernel_size // 2),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
                nn.Conv2d(fc_channels, fc_channels, 1),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
            )
            for m in self.fc:
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.zeros_(m.bias)
            score_in = fc_channels
        else:
            self.fc = nn.Identity()
            score_in = coarse.channels
        self.score_fr = nn.Conv2d(score_in, num_classes, 1)
        # skip scorers: zero-initialised so the net starts as the coarser FCN and learns refinements
        self.score_skip = nn.ModuleDict(
            {str(s): nn.Conv2d(chosen[s].channels, num_classes, 1) for s in FCN_VARIANTS[variant][1:]}
        )
        for conv in [self.score_fr, *self.score_skip.values()]:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        # x2 upsamplings between fused levels (learned), then the final one to stride 1
        self.up2 = nn.ModuleDict(
            {str(s): BilinearUpsample(num_classes, 2) for s in FCN_VARIANTS[variant][1:]}
        )
        finest = FCN_VARIANTS[variant][-1]
        self.up_final = BilinearUpsample(num_classes, finest, learnable=learn_final_upsample)

    def forward(self, features: dict[str, Tensor], size: Sequence[int]) -> Tensor:
        score = self.score_fr(self.fc(features[self.in_features[32]]))
        for key, up in self.up2.items():
            skip = features[self.in_features[int(key)]]
            score = up.align(up(score), skip.shape[-2:]) + self.score_skip[key](skip)
        return self.up_final.align(self.up_final(score), size)

    @torch.no_grad()
    def load_classifier(self, linears: Sequence[nn.Linear]) -> bool:
        """Convolutionalise a pretrained classifier's first two linear layers into fc6/fc7 (e.g.
        VGG's 25088->4096 and 4096->4096). Returns whether both fitted (nothing is changed else)."""
        if not isinstance(self.fc, nn.Sequential) or len(linears) < 2:
            return False
        fc6, fc7 = self.fc[0], self.fc[3]
        w6, w7 = fc6.weight.shape, fc7.weight.shape
        fits = linears[0].weight.shape == (w6[0], w6[1] * w6[2] * w6[3]) and linears[
            1
        ].weight.shape == (w7[0], w7[1] * w7[2] * w7[3])
        if not fits:
            return False
        return convolutionize_(fc6, linears[0]) and convolutionize_(fc7, linears[1])


class FCN(nn.Module):
    """Backbone + :class:`FCNHead`: ``x [N, C, H, W] -> logits [N, K, H, W]`` for any ``H, W``.

    ``backbone`` is any module returning a dict of named features and exposing ``feature_info``
    (see ``visiontasks.backbones``).
    """

    def __init__(self, backbone: nn.Module, head: FCNHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x), x.shape[-2:])
