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
from typing import Any, Callable, Sequence

import torch
from torch import nn

from visiontasks.errors import InvalidInputError, MissingFileError, unknown_name

from ._base import Backbone, ImageClassifier, adapt_input_conv
from ._transfer import (
    BackboneTensors,
    canonical_keys,
    checkpoint_backbone_name,
    is_lightning_checkpoint,
    load_checkpoint_backbone,
)

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


def _read_weights_file(path: Path) -> dict[str, Any]:
    """A weights file's content: a Lightning checkpoint dict (of any visiontasks task) or a state_dict.

    A ``.ckpt`` file that is neither gets :func:`~visiontasks.checkpoints.read_checkpoint`'s error
    ("X is not a Lightning checkpoint")."""
    from visiontasks.checkpoints import read_checkpoint

    if not path.is_file():
        raise MissingFileError(f"weights file {path} does not exist")
    if path.suffix == ".ckpt":
        try:
            return read_checkpoint(path)
        except InvalidInputError as err:
            if "plain state_dict" not in str(err):  # a state_dict saved as .ckpt is loaded as one
                raise
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file name
        raise InvalidInputError(f"cannot read weights file {path}: {err}") from err
    if is_lightning_checkpoint(obj):
        return obj
    return _as_state_dict(obj, path)


def _as_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    from visiontasks.checkpoints import state_dict_of

    return state_dict_of(obj, path)


def _looks_like_path(weights: str | os.PathLike) -> bool:
    s = str(weights)
    return isinstance(weights, os.PathLike) or os.sep in s or s.endswith(
        (".pth", ".pt", ".ckpt", ".bin")
    )


def resolve_weights(spec: BackboneSpec, weights: str | os.PathLike) -> dict[str, Any]:
    """What ``weights`` names for ``spec``: a state_dict (from a file or a torchvision weights name) or
    a Lightning checkpoint dict (:func:`is_lightning_checkpoint`) of any visiontasks task.

    A torchvision name (``"IMAGENET1K_V1"``, ``"DEFAULT"``) downloads only here, when asked for.
    """
    if _looks_like_path(weights) or Path(str(weights)).is_file():
        return _read_weights_file(Path(weights))
    if spec.tv_weights is None:
        raise InvalidInputError(
            f"backbone {spec.name!r} has no torchvision weights; pass a path to a state_dict file"
        )
    from torchvision.models import get_weight

    try:
        enum_value = get_weight(f"{spec.tv_weights}.{weights}")
    except (ValueError, KeyError, AttributeError) as err:
        raise InvalidInputError(
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
            raise InvalidInputError(f"weights do not fit {spec.name!r}: shape mismatch for {mismatched}")
        warnings.warn(
            f"{spec.name}: classifier layer {last_linear[0]} re-initialised (class count differs)",
            stacklevel=3,
        )
        state = {k: v for k, v in state.items() if k not in mismatched}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k.rsplit(".", 1)[0] not in _dropped(mismatched)]
    if missing and not result.unexpected_keys:
        missing = _missing_beyond_backbone(model, spec, missing)
    if missing or result.unexpected_keys:
        raise InvalidInputError(
            f"weights do not fit {spec.name!r}: missing {missing[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )


def _missing_beyond_backbone(model: nn.Module, spec: BackboneSpec, missing: list[str]) -> list[str]:
    """The keys of ``missing`` that a backbone-only file may not lack. A file written by
    ``export-backbone`` has no classifier head, and no stages deeper than its task used (those keep
    their initialisation, with a warning); the first stage must be there."""
    stages, _ = spec.split(model)
    backbone = Backbone(stages)
    stage_of = {c: b.split(".", 2)[1] for b, c in canonical_keys(model, backbone).items()}
    order = [info.name for info in backbone.stage_info]
    in_backbone = [k for k in missing if k in stage_of]
    first = min((order.index(stage_of[k]) for k in in_backbone), default=len(order))
    deeper = order[first:]
    absent = set(missing)
    # (BatchNorm does not report a missing num_batches_tracked)
    whole_stages = all(c in absent or c.endswith("num_batches_tracked") for c, stage in stage_of.items()
                       if stage in deeper)
    if in_backbone and (first == 0 or not whole_stages):
        return in_backbone
    if in_backbone:
        warnings.warn(f"{spec.name}: the weights hold no stages {deeper}; they keep their initialisation",
                      stacklevel=4)
    return []


def _dropped(keys: list[str]) -> set[str]:
    return {k.rsplit(".", 1)[0] for k in keys}


def _build_canonical(
    name: str, num_classes: int, weights: str | os.PathLike | None, in_chans: int, with_head: bool = False
) -> tuple[BackboneSpec, nn.Module]:
    """The canonical model with ``weights`` loaded; from a checkpoint, its paper head too when
    ``with_head`` and the checkpoint holds one (a ``ClassificationTask`` with ``head: paper``)."""
    spec = get_spec(name)
    if in_chans < 1:
        raise InvalidInputError(f"in_chans must be >= 1, got {in_chans}")
    model = spec.make_model(num_classes)
    source = None if weights is None else resolve_weights(spec, weights)
    if source is not None and is_lightning_checkpoint(source):
        found = load_backbone_from_checkpoint(model, spec, source, str(weights))
        if with_head:
            _load_head_from_checkpoint(model, spec, source["state_dict"], found.prefix)
    elif source is not None:
        _load_into(model, source, spec)
        if hasattr(model, "transform_input") and not _looks_like_path(weights):
            # torchvision's GoogLeNet weights (ported from TF) expect its input re-normalisation.
            model.transform_input = True
    conv = model.get_submodule(spec.first_conv)
    if conv.in_channels != in_chans:
        model.set_submodule(spec.first_conv, adapt_input_conv(conv, in_chans))
    return spec, model


def load_backbone_from_checkpoint(
    model: nn.Module, spec: BackboneSpec, ckpt: dict[str, Any], path: str
) -> BackboneTensors:
    """Load the backbone tensors of a visiontasks checkpoint (any task) into the canonical ``model``.

    The checkpoint's ``hyper_parameters["backbone"]`` must name ``spec`` (else an
    :class:`InvalidInputError` naming both). When the checkpoint's first convolution takes another
    channel count, ``model``'s is made to fit first; the caller then adapts it to its own ``in_chans``
    (as for torchvision weights). GoogLeNet's two stem layouts (with and without torchvision's input
    re-normalisation) are both recognised.
    """
    theirs = checkpoint_backbone_name(ckpt)
    if theirs is not None and _resolved(theirs) != spec.name:
        raise InvalidInputError(
            f"{path} holds a {theirs} backbone, not {spec.name}; set backbone: {theirs} or give a "
            f"checkpoint of a {spec.name} run"
        )
    stages, _ = spec.split(model)
    probe = Backbone(stages)
    conv_key = {c: b for b, c in canonical_keys(model, probe).items()}.get(f"{spec.first_conv}.weight")
    conv = model.get_submodule(spec.first_conv)
    if conv_key is not None:
        theirs_in = [v.shape[1] for k, v in ckpt["state_dict"].items()
                     if (k == conv_key or k.endswith("." + conv_key)) and v.ndim == 4]
        if theirs_in and theirs_in[0] != conv.in_channels:
            model.set_submodule(spec.first_conv, adapt_input_conv(conv, int(theirs_in[0])))
    layouts = [False, True] if hasattr(model, "transform_input") else [None]
    for i, flag in enumerate(layouts):
        if flag is not None:
            model.transform_input = flag
        stages, _ = spec.split(model)
        try:
            return load_checkpoint_backbone(model, Backbone(stages), ckpt, path, spec.name)
        except InvalidInputError:
            if i == len(layouts) - 1:
                raise
    raise AssertionError("unreachable")


def _load_head_from_checkpoint(
    model: nn.Module, spec: BackboneSpec, state_dict: dict[str, torch.Tensor], backbone_prefix: str
) -> bool:
    """Load the paper head of an ``ImageClassifier`` checkpointed beside its backbone (``<p>backbone.``
    and ``<p>head.``) into ``model``; the last layer is re-initialised, with a warning, when the class
    count differs. Returns whether a head was loaded (nothing changes when the checkpoint has none)."""
    if not backbone_prefix.endswith("backbone."):
        return False
    prefix = backbone_prefix[: -len("backbone.")] + "head."
    _, head = spec.split(model)
    mapping = canonical_keys(model, head)  # head key -> canonical key
    if not mapping or not all(prefix + k in state_dict for k in mapping):
        return False
    state = {c: state_dict[prefix + k] for k, c in mapping.items()}
    _load_into(model, {**model.state_dict(), **state}, spec)
    return True


def _resolved(name: str) -> str:
    return _ALIASES.get(name, name)


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
    (downloaded only when given), a path to a state_dict in torchvision's layout, or a visiontasks
    checkpoint (``.ckpt`` of any task) whose backbone is ``name``.
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

    With 1000 classes its parameters equal torchvision's model of the same name exactly. ``weights``
    as in :func:`build_backbone`; from a visiontasks checkpoint the head is loaded too when the checkpoint
    holds this paper head (a ``ClassificationTask`` with ``head: paper``; its last layer is
    re-initialised, with a warning, for another class count).
    """
    spec, model = _build_canonical(name, num_classes, weights, in_chans, with_head=True)
    stages, head = spec.split(model)
    return ImageClassifier(Backbone(stages, in_chans, None, frozen_stages), head)


@dataclass(frozen=True)
class CheckpointBackbone:
    """A checkpoint's backbone in the canonical model's layout (what ``export-backbone`` writes).

    ``state``: the canonical model's keys minus its classifier head (torchvision's layout where
    torchvision has the architecture, see ``in_torchvision``); ``stages``: the stages it holds;
    ``in_chans``: the input channels of its first convolution; ``transform_input``: GoogLeNet trained
    with torchvision's input re-normalisation (set the same on torchvision's model).
    """

    name: str
    state: dict[str, torch.Tensor]
    stages: list[str]
    all_stages: list[str]
    in_chans: int
    in_torchvision: bool
    transform_input: bool


def checkpoint_backbone(path: str | os.PathLike) -> CheckpointBackbone:
    """The backbone of a visiontasks checkpoint (any task) in the canonical layout."""
    import torchvision
    from torchvision.models import list_models

    from visiontasks.checkpoints import read_checkpoint

    ckpt = read_checkpoint(path)
    name = checkpoint_backbone_name(ckpt)
    if name is None:
        raise InvalidInputError(
            f"{path} does not name its backbone (its hyper_parameters have no 'backbone'); give a "
            "checkpoint written by a visiontasks task"
        )
    spec = get_spec(name)
    model = spec.make_model(1000)
    found = load_backbone_from_checkpoint(model, spec, ckpt, str(path))
    stages, _ = spec.split(model)
    backbone = Backbone(stages)
    mapping = canonical_keys(model, backbone)
    unmapped = [k for k in found.state if k not in mapping]
    if unmapped:  # a split that creates parameters of its own would land here
        raise RuntimeError(f"{spec.name}: backbone keys without a canonical counterpart: {unmapped[:5]}")
    own = model.state_dict()
    state = {mapping[k]: own[mapping[k]].detach().clone() for k in found.state}
    conv = model.get_submodule(spec.first_conv)
    return CheckpointBackbone(
        name=spec.name,
        state=state,
        stages=found.stages,
        all_stages=[info.name for info in backbone.stage_info],
        in_chans=conv.in_channels,
        in_torchvision=spec.name in list_models(module=torchvision.models),
        transform_input=bool(getattr(model, "transform_input", False)),
    )
