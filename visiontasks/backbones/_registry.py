"""One registry of backbone families: build by name, list names, load weights.

Every entry builds the *canonical* model first: the full classifier in torchvision's layout (the
torchvision class itself where torchvision has the architecture), so a torchvision ``state_dict``
loads into it unchanged. The canonical model is then split into named stages (the ``Backbone``) and
its paper's head. Weights are therefore always loaded before the split.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from visiontasks.errors import MissingFileError, unknown_name

from ._base import Backbone, ImageClassifier, adapt_input_conv

Stage = tuple[str, nn.Module, int, int]


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one named backbone.

    ``make_model(num_classes)`` returns the canonical classifier; ``split(model)`` returns its stages
    ``(name, module, channels, stride)`` and its head (deepest feature map -> logits);
    ``first_conv`` is the dotted path of the first convolution (swapped for ``in_chans != 3``);
    ``tv_weights`` names torchvision's weights enum (e.g. ``"ResNet18_Weights"``) when it has one.
    """

    name: str
    make_model: Callable[[int], nn.Module]
    split: Callable[[nn.Module], tuple[list[Stage], nn.Module]]
    first_conv: str
    tv_weights: str | None = None
    default_in_chans: int = 3
    input_size: int = 224


def torchvision_spec(
    name: str, builder: Callable[..., nn.Module], split: Callable[[nn.Module], tuple[list[Stage], nn.Module]],
    first_conv: str, tv_weights: str | None,
) -> BackboneSpec:
    """The spec of an architecture torchvision defines: ``builder`` is its model function (e.g.
    ``torchvision.models.resnet50``), called without weights (the registry loads them itself)."""
    return BackboneSpec(name=name, make_model=lambda n: builder(weights=None, num_classes=n), split=split,
                        first_conv=first_conv, tv_weights=tv_weights)


_REGISTRY: dict[str, BackboneSpec] = {}
_ALIASES: dict[str, str] = {}


def register_backbone(spec: BackboneSpec, aliases: Sequence[str] = ()) -> BackboneSpec:
    """Add ``spec``; ``aliases`` (e.g. the VGG paper's ``vgg_d`` for ``vgg16``) resolve to it but are
    not listed by :func:`list_backbones`."""
    for name in (spec.name, *aliases):
        if name in _REGISTRY or name in _ALIASES:
            raise ValueError(f"backbone {name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    _ALIASES.update({a: spec.name for a in aliases})
    return spec


def list_backbones() -> list[str]:
    """Names accepted by :func:`build_backbone`, sorted."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> BackboneSpec:
    try:
        return _REGISTRY[_ALIASES.get(name, name)]
    except KeyError:
        raise unknown_name("backbone", name, list_backbones()) from None


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise MissingFileError(f"weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"cannot read weights file {path}: {err}") from err
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ValueError(f"weights file {path} holds a {type(obj).__name__}, not a state_dict")
    return obj


def _looks_like_path(weights: str | os.PathLike) -> bool:
    s = str(weights)
    return isinstance(weights, os.PathLike) or os.sep in s or s.endswith(
        (".pth", ".pt", ".ckpt", ".bin")
    )


def resolve_state_dict(spec: BackboneSpec, weights: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state_dict for ``spec`` from a file path or a torchvision weights name.

    A torchvision name (``"IMAGENET1K_V1"``, ``"DEFAULT"``) downloads only here, when asked for.
    """
    if _looks_like_path(weights) or Path(str(weights)).is_file():
        return _read_state_dict(Path(weights))
    if spec.tv_weights is None:
        raise ValueError(
            f"backbone {spec.name!r} has no torchvision weights; pass a path to a state_dict file"
        )
    from torchvision.models import get_weight

    try:
        enum_value = get_weight(f"{spec.tv_weights}.{weights}")
    except (ValueError, KeyError, AttributeError) as err:
        raise ValueError(
            f"unknown weights {weights!r} for {spec.name!r}: neither a file nor a member of "
            f"torchvision's {spec.tv_weights}"
        ) from err
    return enum_value.get_state_dict(progress=True, check_hash=True)


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], spec: BackboneSpec) -> None:
    own = model.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("aux")}  # GoogLeNet aux heads
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        # Only the last layer may differ (another class count): it is re-initialised. That is the
        # last Linear, or the last convolution in all-convolutional nets (NiN's class-count 1x1).
        last_linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1:] or [
            n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)
        ][-1:]
        if not all(k.rsplit(".", 1)[0] in last_linear for k in mismatched):
            raise ValueError(f"weights do not fit {spec.name!r}: shape mismatch for {mismatched}")
        warnings.warn(
            f"{spec.name}: classifier layer {last_linear[0]} re-initialised (class count differs)",
            stacklevel=3,
        )
        state = {k: v for k, v in state.items() if k not in mismatched}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k.rsplit(".", 1)[0] not in _dropped(mismatched)]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"weights do not fit {spec.name!r}: missing {missing[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )


def _dropped(keys: list[str]) -> set[str]:
    return {k.rsplit(".", 1)[0] for k in keys}


def _build_canonical(
    name: str, num_classes: int, weights: str | os.PathLike | None, in_chans: int
) -> tuple[BackboneSpec, nn.Module]:
    spec = get_spec(name)
    if in_chans < 1:
        raise ValueError(f"in_chans must be >= 1, got {in_chans}")
    model = spec.make_model(num_classes)
    if weights is not None:
        _load_into(model, resolve_state_dict(spec, weights), spec)
        if hasattr(model, "transform_input") and not _looks_like_path(weights):
            # torchvision's GoogLeNet weights (ported from TF) expect its input re-normalisation.
            model.transform_input = True
    conv = model.get_submodule(spec.first_conv)
    if conv.in_channels != in_chans:
        model.set_submodule(spec.first_conv, adapt_input_conv(conv, in_chans))
    return spec, model


def build_backbone(
    name: str,
    weights: str | os.PathLike | None = None,
    in_chans: int = 3,
    out_indices: Sequence[int] | None = None,
    frozen_stages: int = 0,
    norm_eval: bool = False,
) -> Backbone:
    """Build a registered backbone: ``forward(x) -> dict[str, Tensor]`` with ``feature_info``.

    ``weights``: ``None`` (random init), a torchvision weights name such as ``"IMAGENET1K_V1"``
    (downloaded only when given), or a path to a state_dict in torchvision's layout.
    """
    _, model = _build_canonical(name, 1000, weights, in_chans)
    stages, _ = get_spec(name).split(model)
    return Backbone(stages, in_chans, out_indices, frozen_stages, norm_eval)


def build_classifier(
    name: str,
    num_classes: int = 1000,
    weights: str | os.PathLike | None = None,
    in_chans: int = 3,
    frozen_stages: int = 0,
) -> ImageClassifier:
    """The backbone with its paper's head: ``[N, in_chans, H, W] -> logits [N, num_classes]``.

    With 1000 classes its parameters equal torchvision's model of the same name exactly.
    """
    spec, model = _build_canonical(name, num_classes, weights, in_chans)
    stages, head = spec.split(model)
    return ImageClassifier(Backbone(stages, in_chans, None, frozen_stages), head)
