"""Class activation maps of a classifier on the backbone feature contract (no Lightning here).

CAM (Zhou et al., CVPR 2016): when the head is global average pooling then one linear map (a
``Linear``, or NiN's class-count 1x1 convolution before the pooling), logit ``c`` is
``b_c + mean_xy sum_k w_ck f_k(x, y)``; the map of class ``c`` is ``M_c(x, y) = sum_k w_ck f_k(x, y)``
on the deepest feature map ``f`` [C, h, w]: exact, one forward pass, no gradients, and its spatial
mean is the logit minus the bias. NiN, GoogLeNet, ResNet, DenseNet, MobileNet v1/v2 (``head:
paper``) and every backbone with ``head: linear`` have such a head.

Grad-CAM (Selvaraju et al., ICCV 2017) for any other head (LeNet-5, AlexNet, VGG with their FC
layers): ``relu(sum_k alpha_ck f_k)`` with ``alpha_ck`` the spatial mean of ``d logit_c / d f_k``
(their eqs. 1-2); on a GAP + linear head it equals ``relu(M_c) / (h w)`` (their section 3.1).

Why not the ``grad-cam`` package (pytorch-grad-cam 1.5.7, evaluated): its dependencies would fit
(only ``ttach`` is new; it wants opencv-python-headless as albumentations does), but it finds the
feature map with forward hooks on a named layer, always back-propagates through the whole model
(also for plain CAM, which needs no gradient), clamps negatives, min-max normalises every map to
[0, 1] and resizes it with OpenCV to the input tensor: the logit units are gone, so the exact
identity above could not be checked, and a stretched or cropped input could not be mapped back to
the file. Our backbone already returns the deepest feature map by name and the head is a separate
module, so both methods are the few lines below (no hooks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visiontasks.backbones import Backbone, ImageClassifier
from visiontasks.errors import unknown_name

from .classification import DeepestFeature, LinearHead

Method = Literal["auto", "cam", "grad-cam"]


@dataclass(frozen=True)
class ClassMaps:
    """``maps`` float [N, h, w] at the deepest feature map's resolution (``stride`` input pixels per
    cell), of class ``classes`` int64 [N]; ``logits`` [N, K] of the same pass; ``method``: ``cam``
    (units: logit per cell) or ``grad-cam`` (non-negative, the gradient-weighted features)."""

    maps: Tensor
    classes: Tensor
    logits: Tensor
    method: str
    stride: int


def split_classifier(model: nn.Module) -> tuple[Backbone, nn.Module]:
    """``(backbone, head)`` of a classification model: an :class:`ImageClassifier` (``head: paper``)
    or ``Sequential(DeepestFeature, LinearHead)`` (``head: linear``)."""
    if isinstance(model, ImageClassifier):
        return model.backbone, model.head
    if isinstance(model, nn.Sequential) and len(model) == 2 and isinstance(model[0], DeepestFeature):
        return model[0].backbone, model[1]
    raise TypeError(f"not a visiontasks classifier: {type(model).__name__}")


def _layers(head: nn.Module) -> list[nn.Module]:
    """The head's layers in the order they run; a module other than ``Sequential``/``LinearHead``
    stays whole (its forward may do anything, so it is never read as GAP + linear)."""
    if isinstance(head, LinearHead):
        return [head.pool, head.dropout, head.fc]
    if isinstance(head, nn.Sequential):
        return [m for child in head for m in _layers(child)]
    return [head]


def _is_gap(m: nn.Module) -> bool:
    size = m.output_size if isinstance(m, nn.AdaptiveAvgPool2d) else None
    return size in (1, (1, 1), [1, 1])


def gap_linear(head: nn.Module) -> tuple[Tensor, Tensor] | None:
    """``(weight [K, C], bias [K])`` when ``head`` is global average pooling then one linear map
    (dropout and flatten aside; eval mode), or NiN's 1x1 convolution then the pooling; else ``None``."""
    layers = [m for m in _layers(head) if not isinstance(m, (nn.Dropout, nn.Flatten, nn.Identity))]
    if len(layers) != 2:
        return None
    first, second = layers
    if _is_gap(first) and isinstance(second, nn.Linear):
        weight, bias = second.weight, second.bias
    elif (_is_gap(second) and isinstance(first, nn.Conv2d) and first.kernel_size == (1, 1) and first.groups == 1
          and first.stride == (1, 1) and first.padding in ((0, 0), 0)):
        weight, bias = first.weight[:, :, 0, 0], first.bias
    else:
        return None
    return weight, bias if bias is not None else weight.new_zeros(weight.shape[0])


def class_index(name: str | None, class_names: Sequence[str]) -> int | None:
    """The index of class ``name`` (``None``: the predicted class); an unknown name is one error
    line listing the classes, with the closest ones."""
    if name is None:
        return None
    names = [str(n) for n in class_names]
    if str(name) not in names:
        raise unknown_name("cam_class", name, names)
    return names.index(str(name))


def class_activation_maps(model: nn.Module, x: Tensor, class_id: int | None = None,
                          method: Method = "auto") -> ClassMaps:
    """The maps of ``x`` [N, C_in, H, W] for class ``class_id`` (``None``: each image's predicted
    class). ``auto``: CAM where the head is GAP + linear (:func:`gap_linear`), else Grad-CAM."""
    backbone, head = split_classifier(model)
    features = backbone(x)[backbone.out_features[-1]]
    stride = backbone.feature_info[-1].stride
    linear = gap_linear(head)
    if method == "cam" and linear is None:
        raise ValueError("CAM needs a global-average-pooling + linear head; use Grad-CAM")
    if method == "grad-cam" or linear is None:
        return _grad_cam(head, features, class_id, stride)
    logits = head(features)
    classes = _classes(logits, class_id)
    maps = torch.einsum("nchw,nc->nhw", features.float(), linear[0].float()[classes])
    return ClassMaps(maps, classes, logits, "cam", stride)


def _classes(logits: Tensor, class_id: int | None) -> Tensor:
    if class_id is None:
        return logits.argmax(1)
    return torch.full((len(logits),), int(class_id), dtype=torch.long, device=logits.device)


def _grad_cam(head: nn.Module, features: Tensor, class_id: int | None, stride: int) -> ClassMaps:
    # the features are cloned out of inference mode (Lightning's predict and Predictor run in it)
    with torch.inference_mode(False), torch.enable_grad():
        f = features.detach().clone().float().requires_grad_(True)
        logits = head(f)
        classes = _classes(logits, class_id)
        (grad,) = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), f)
        alpha = grad.mean(dim=(2, 3))  # [N, C]: eq. 1, the pooled gradients
        maps = torch.relu(torch.einsum("nchw,nc->nhw", f.detach(), alpha))  # eq. 2
    return ClassMaps(maps, classes, logits.detach(), "grad-cam", stride)


def maps_to_input(maps: Tensor, stride: int, size: Sequence[int]) -> Tensor:
    """Feature-resolution maps [N, h, w] at the model input's (H, W) pixels: cell ``i`` covers input
    pixels ``[i * stride, (i + 1) * stride)`` (the backbone contract), so the maps are upsampled by
    ``stride`` (bilinear) and cut to (H, W), the last row/column repeated where they fall short
    (valid convolutions, e.g. LeNet-5's C3, shift the true centres by a few pixels)."""
    h, w = int(size[0]), int(size[1])
    up = F.interpolate(maps[:, None].float(), scale_factor=stride, mode="bilinear", align_corners=False)
    up = up[..., :h, :w]
    if up.shape[-2] < h or up.shape[-1] < w:
        up = F.pad(up, (0, w - up.shape[-1], 0, h - up.shape[-2]), mode="replicate")
    return up[:, 0]
