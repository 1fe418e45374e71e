"""Moving a backbone between tasks: find a backbone's tensors in any visiontasks checkpoint.

A task keeps its backbone somewhere in its module tree (``model.backbone.``, ``model.0.body.``,
``detector.backbone.``, ...). Rather than knowing each task's attribute path, the tensors are found
by their names and shapes: the prefix under which the keys of a freshly built ``Backbone`` of that
name (``stages.<stage>.<...>``) appear with the same shapes. No Lightning import: the checkpoint is
read with :func:`visiontasks.checkpoints.read_checkpoint` (torch only).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visiontasks.errors import InvalidInputError


@dataclass
class BackboneTensors:
    """The tensors of one backbone found in a checkpoint.

    ``state``: ``{"stages.<stage>.<...>": Tensor}`` for the stages found (the ``Backbone``'s keys);
    ``stages``: their names, shallow to deep (a detector keeps only the stages it reads, so deeper
    ones may be missing); ``prefix``: where they sit in the checkpoint's state_dict.
    """

    state: dict[str, torch.Tensor]
    stages: list[str]
    prefix: str


def is_lightning_checkpoint(obj: Any) -> bool:
    """Whether a loaded object is a Lightning checkpoint dict (not a plain state_dict)."""
    return isinstance(obj, dict) and "state_dict" in obj and "pytorch-lightning_version" in obj


def checkpoint_backbone_name(ckpt: dict[str, Any]) -> str | None:
    """The backbone name a visiontasks checkpoint states in its hyper-parameters, if any."""
    value = (ckpt.get("hyper_parameters") or {}).get("backbone")
    return str(value) if value else None


def checkpoint_in_chans(ckpt: dict[str, Any]) -> int | None:
    """The ``in_chans`` a visiontasks checkpoint states in its hyper-parameters, if any."""
    value = (ckpt.get("hyper_parameters") or {}).get("in_chans")
    return int(value) if value else None


def _stage_of(key: str) -> str:
    return key.split(".", 2)[1]  # "stages.<stage>.<...>"


def find_backbone_tensors(
    state_dict: dict[str, torch.Tensor], backbone: nn.Module
) -> BackboneTensors | None:
    """The tensors of ``backbone`` (a freshly built ``Backbone``) in ``state_dict``.

    Each prefix under which ``backbone``'s first key appears is tried; it holds the stages whose keys
    all appear under it with the same shapes, shallow to deep. The prefix holding the
    most stages wins (the shortest on a tie); ``None`` when no stage is found at all.
    """
    own = backbone.state_dict()
    if not own:
        return None
    order: list[str] = []
    by_stage: dict[str, list[str]] = {}
    for key in own:
        stage = _stage_of(key)
        if stage not in by_stage:
            order.append(stage)
            by_stage[stage] = []
        by_stage[stage].append(key)
    first = next(iter(own))
    prefixes = sorted(
        {k[: -len(first)] for k in state_dict if k.endswith(first) and (k == first or k[-len(first) - 1] == ".")},
        key=len,
    )
    best: BackboneTensors | None = None
    for prefix in prefixes:
        found: list[str] = []
        for stage in order:
            keys = by_stage[stage]
            fits = all(
                prefix + k in state_dict
                and tuple(state_dict[prefix + k].shape) == tuple(own[k].shape)
                for k in keys
            )
            if not fits:
                break
            found.append(stage)
        if found and (best is None or len(found) > len(best.stages)):
            state = {k: state_dict[prefix + k] for s in found for k in by_stage[s]}
            best = BackboneTensors(state, found, prefix)
    return best


def load_checkpoint_backbone(
    model: nn.Module,
    backbone: nn.Module,
    ckpt: dict[str, Any],
    path: str | Path,
    name: str,
) -> BackboneTensors:
    """Load the ``name`` backbone held by the checkpoint ``ckpt`` (read from ``path``) into
    ``backbone``, which shares its modules with the canonical ``model`` (so ``model`` holds the
    tensors too).

    Raises :class:`InvalidInputError` saying that no ``name`` backbone is in it (the caller checks the
    name the checkpoint states first). Stages the checkpoint lacks (a detector
    keeps only the stages it reads) keep their initialisation, with a warning.
    """
    tensors = find_backbone_tensors(ckpt["state_dict"], backbone)
    if tensors is None:
        raise InvalidInputError(
            f"{path} holds no {name} backbone (no tensors named and shaped like a {name}'s "
            f"'{next(iter(backbone.state_dict()), '?')}'); give a checkpoint of a {name} run"
        )
    result = backbone.load_state_dict(tensors.state, strict=False)
    if result.unexpected_keys:  # cannot happen: the keys come from the backbone itself
        raise RuntimeError(f"unexpected keys {result.unexpected_keys[:5]}")
    all_stages = list(dict.fromkeys(_stage_of(k) for k in backbone.state_dict()))
    left = [s for s in all_stages if s not in tensors.stages]
    if left:
        warnings.warn(
            f"{path} holds only the stages {tensors.stages} of {name} (its task did not use the deeper "
            f"ones); {left} keep their initialisation",
            stacklevel=4,
        )
    return tensors


def canonical_keys(model: nn.Module, backbone: nn.Module) -> dict[str, str]:
    """``{backbone key: canonical model key}`` for the tensors both hold (the same tensor objects:
    the backbone is split from the canonical model), e.g. ``stages.layer1.0.conv1.weight`` ->
    ``layer1.0.conv1.weight``. Keys of the backbone with no counterpart are left out."""
    by_id = {id(t): k for k, t in model.state_dict(keep_vars=True).items()}
    out: dict[str, str] = {}
    for key, tensor in backbone.state_dict(keep_vars=True).items():
        if id(tensor) in by_id:
            out[key] = by_id[id(tensor)]
    return out
