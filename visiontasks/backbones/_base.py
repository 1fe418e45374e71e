"""The backbone contract: named feature maps, with channels and stride per name.

Modelled on detectron2's ``Backbone``/``ShapeSpec`` and timm's ``FeatureInfo``: a backbone is a
sequence of stages; ``forward`` returns the outputs of the requested stages by name, shallow to deep,
and ``feature_info`` says, for each of them, how many channels it has and its stride (the reduction of
its spatial size with respect to the input, e.g. 32 for a ResNet's last stage).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from visiontasks.errors import InvalidInputError


@dataclass(frozen=True)
class FeatureInfo:
    """One named output of a backbone: ``channels`` feature maps at ``stride`` pixels per cell."""

    name: str
    channels: int
    stride: int


class Backbone(nn.Module):
    """A feature extractor built from named stages.

    Args:
        stages: ``(name, module, channels, stride)`` per stage, shallow to deep; each module maps the
            previous stage's output to this stage's output.
        in_chans: number of input channels (1 for MNIST-like data, 3 for RGB).
        out_indices: which stages to return (indices into ``stages``; negative counts from the end);
            ``None`` returns all. Stages deeper than the deepest requested one are not run.
        frozen_stages: the first ``frozen_stages`` stages get ``requires_grad=False`` and stay in
            eval mode (their BatchNorm statistics are not updated).
        norm_eval: keep every BatchNorm layer in eval mode while training (frozen statistics, as in
            detection fine-tuning with small batches); affine parameters still train unless frozen.

    ``forward(x: [N, in_chans, H, W]) -> dict[name, Tensor[N, channels, ~H/stride, ~W/stride]]``.
    The exact side of an output is ``ceil(H / stride)`` or a little less (valid convolutions); what
    holds exactly is that adding ``k * stride`` pixels to the input adds ``k`` cells to the output.
    """

    def __init__(
        self,
        stages: Sequence[tuple[str, nn.Module, int, int]],
        in_chans: int = 3,
        out_indices: Sequence[int] | None = None,
        frozen_stages: int = 0,
        norm_eval: bool = False,
    ) -> None:
        super().__init__()
        if not stages:
            raise ValueError("a backbone needs at least one stage")
        self.in_chans = in_chans
        self.stages = nn.ModuleDict({name: module for name, module, _, _ in stages})
        self._all_info = [FeatureInfo(name, ch, st) for name, _, ch, st in stages]
        n = len(stages)
        if out_indices is None:
            out_indices = list(range(n))
        normalized = []
        for i in out_indices:
            j = i + n if i < 0 else i
            if not 0 <= j < n:
                names = [f.name for f in self._all_info]
                raise InvalidInputError(f"out_indices entry {i} is out of range for stages {names}")
            normalized.append(j)
        self.out_indices = tuple(sorted(set(normalized)))
        self.feature_info = [self._all_info[i] for i in self.out_indices]
        if not 0 <= frozen_stages <= n:
            raise InvalidInputError(f"frozen_stages must be in [0, {n}], got {frozen_stages}")
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self._freeze()

    # -- contract ---------------------------------------------------------------------------------
    @property
    def out_features(self) -> list[str]:
        return [f.name for f in self.feature_info]

    @property
    def out_channels(self) -> int:
        """Channels of the deepest returned output."""
        return self.feature_info[-1].channels

    @property
    def stage_info(self) -> list[FeatureInfo]:
        """Every stage, returned or not."""
        return list(self._all_info)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise InvalidInputError(
                f"expected input [N, {self.in_chans}, H, W], got {list(x.shape)}; "
                f"build the backbone with in_chans={x.shape[1] if x.ndim == 4 else '?'} "
                "or convert the images"
            )
        out: dict[str, Tensor] = {}
        last = self.out_indices[-1]
        for i, (name, stage) in enumerate(self.stages.items()):
            x = stage(x)
            if i in self.out_indices:
                out[name] = x
            if i == last:
                break
        return out

    # -- freezing ---------------------------------------------------------------------------------
    def _frozen_modules(self) -> Iterable[nn.Module]:
        return list(self.stages.values())[: self.frozen_stages]

    def _freeze(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for p in module.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> "Backbone":
        super().train(mode)
        if mode:
            for module in self._frozen_modules():
                module.eval()
            if self.norm_eval:
                for m in self.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()
        return self


class ImageClassifier(nn.Module):
    """A backbone plus its paper's head: ``[N, C, H, W] -> logits [N, num_classes]``.

    Built from one torchvision-layout model, so its parameters are exactly the original's.
    """

    def __init__(self, backbone: Backbone, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        feats = self.backbone(x)
        return self.head(feats[self.backbone.out_features[-1]])


def adapt_input_conv(conv: nn.Conv2d, in_chans: int) -> nn.Conv2d:
    """A copy of ``conv`` taking ``in_chans`` inputs, keeping what pretrained RGB weights mean.

    For 1 channel the RGB filters are summed (a grey image is R = G = B); for other counts the RGB
    filters are repeated and rescaled by ``3 / in_chans`` (timm's ``adapt_input_conv`` rule).
    """
    if conv.in_channels == in_chans:
        return conv
    new = nn.Conv2d(
        in_chans,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        conv.bias is not None,
        conv.padding_mode,
    )
    with torch.no_grad():
        w = conv.weight
        if in_chans == 1:
            new.weight.copy_(w.sum(dim=1, keepdim=True))
        else:
            reps = -(-in_chans // w.shape[1])
            new.weight.copy_(w.repeat(1, reps, 1, 1)[:, :in_chans] * (w.shape[1] / in_chans))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new
