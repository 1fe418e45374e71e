"""Backbones: one registry, one feature contract (see ``_base.Backbone``).

>>> from visiontasks.backbones import build_backbone
>>> net = build_backbone("resnet18", out_indices=(2, 3, 4))
>>> [(f.name, f.channels, f.stride) for f in net.feature_info]
[('layer2', 128, 8), ('layer3', 256, 16), ('layer4', 512, 32)]
"""

from . import alexnet, densenet, googlenet, lenet, mobilenet, nin, resnet, vgg  # noqa: F401  (registers)
from ._base import Backbone, FeatureInfo, ImageClassifier, adapt_input_conv
from ._registry import (
    BackboneSpec,
    CheckpointBackbone,
    build_backbone,
    build_classifier,
    checkpoint_backbone,
    get_spec,
    list_backbones,
    register_backbone,
)

__all__ = [
    "Backbone",
    "BackboneSpec",
    "CheckpointBackbone",
    "FeatureInfo",
    "ImageClassifier",
    "adapt_input_conv",
    "build_backbone",
    "build_classifier",
    "checkpoint_backbone",
    "get_spec",
    "list_backbones",
    "register_backbone",
]
