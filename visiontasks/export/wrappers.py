"""The modules that are exported: a task's network behind the input normalisation (plain
``nn.Module``s, no Lightning).

Every wrapper takes ``image``: ``uint8 [N, H, W, C]`` (RGB, or grey with ``C = 1``; the layout of
numpy / PIL / OpenCV arrays, so a caller stacks decoded images and passes them as they are) and
computes inside the graph what albumentations' ``Normalize`` did in the data:
``(x - 255 * mean) / (255 * std)`` in float32, channels first. Resizing stays outside the graph
(see ``visiontasks.export.spec``).

A task names its wrapper class (its ``export_wrapper`` facet); the exporter and the JSON read only
the class's side of the contract: ``for_task(task, prep, dynamic)``, ``one_image`` (a batch of one
per call), ``refusal(task, fmt, dynamic)`` (why not, in one line, or ``None``), ``any_size(task)``,
``model_name(task)``, ``postprocessing(task)`` and ``describe_outputs(names, num_classes)``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import paste_masks_in_image


class Normalize(nn.Module):
    """``uint8 [N, H, W, C] -> float32 [N, C, H, W]``, ``(x - 255 mean) / (255 std)`` (the same
    arithmetic as albumentations' ``Normalize(max_pixel_value=255)``)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        c = len(mean)
        self.register_buffer("mean", torch.tensor([255.0 * m for m in mean], dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor([255.0 * s for s in std], dtype=torch.float32).view(1, c, 1, 1))

    def forward(self, image: Tensor) -> Tensor:
        return (image.permute(0, 3, 1, 2).to(torch.float32) - self.mean) / self.std


class DenseExport(nn.Module):
    """``image uint8 [N, H, W, C] -> (logits float32, self.decode(logits))``: the normalisation, the
    network (``model``: normalised ``float [N, C, H, W]`` -> scores) and one decoding of its scores;
    the part :class:`ClassifierExport` and :class:`SegmenterExport` share."""

    output_names: tuple[str, str]
    one_image: ClassVar[bool] = False  # any batch size N
    outputs_meaning: ClassVar[dict[str, tuple[str, list[Any], str]]] = {}  # name -> (dtype, shape, meaning)

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.model = model

    @classmethod
    def for_task(cls, task: Any, prep: Any, dynamic: bool = False) -> DenseExport:
        """The wrapper of ``task.model`` (any input size works: ``dynamic`` changes nothing here)."""
        return cls(task.model, prep.mean, prep.std).eval()

    @classmethod
    def refusal(cls, task: Any, fmt: str, dynamic: bool) -> str | None:
        return None  # every format, any size

    @classmethod
    def any_size(cls, task: Any) -> bool:
        return True

    @classmethod
    def model_name(cls, task: Any) -> str:
        return f"{task.hparams.model} on {task.hparams.backbone}"

    @classmethod
    def postprocessing(cls, task: Any) -> dict[str, Any] | None:
        return None

    @classmethod
    def describe_outputs(cls, names: Sequence[str], num_classes: int) -> list[dict[str, Any]]:
        """``[{name, dtype, shape, meaning}]`` for the JSON (``K`` in the shapes is ``num_classes``)."""
        out = []
        for name in names:
            dtype, shape, meaning = cls.outputs_meaning[name]
            out.append({"name": name, "dtype": dtype, "shape": [num_classes if d == "K" else d for d in shape],
                        "meaning": meaning})
        return out

    def decode(self, logits: Tensor) -> Tensor:
        """The second output, computed from the fp32 ``logits``."""
        raise NotImplementedError

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.model(self.normalize(image)).float()
        return logits, self.decode(logits)


class ClassifierExport(DenseExport):
    """``image uint8 [N, H, W, C] -> (logits float [N, K], probs float [N, K])`` (softmax)."""

    output_names = ("logits", "probs")
    outputs_meaning = {"logits": ("float32", ["N", "K"], "class scores before softmax"),
                       "probs": ("float32", ["N", "K"], "softmax of logits")}

    @classmethod
    def model_name(cls, task: Any) -> str:
        return f"{task.hparams.backbone} ({task.hparams.head} head)"

    def decode(self, logits: Tensor) -> Tensor:
        return logits.softmax(1)


class SegmenterExport(DenseExport):
    """``image uint8 [N, H, W, C] -> (logits float [N, K, H, W], mask int64 [N, H, W])`` (argmax)."""

    output_names = ("logits", "mask")
    outputs_meaning = {
        "logits": ("float32", ["N", "K", "H", "W"], "per-pixel class scores at the input's size"),
        "mask": ("int64", ["N", "H", "W"],
                 "per-pixel class index (argmax of logits); to the file's size with nearest-neighbour"),
    }

    def decode(self, logits: Tensor) -> Tensor:
        return logits.argmax(1)


class DetectorExport(nn.Module):
    """``image uint8 [1, H, W, 3] -> detections of that image`` (one image per call, as
    torchvision's detectors export): by default ``boxes float [D, 4]`` xyxy in the pixels of the
    given image, ``scores float [D]`` descending, ``labels int64 [D]`` 0-based classes; the
    detector's ``export_support.outputs`` names them. A detector with a mask branch (its ``detect``
    gives ``roi_masks`` ``[D, M, M]``) also has ``masks`` float ``[D, H, W]``: each detection's mask
    probability in the pixels of the given image, pasted at its box by torchvision's
    ``paste_masks_in_image`` (what ``Detector.forward`` does for the eager model). A detector with a
    keypoint branch also has ``keypoints`` float ``[D, P, 3]`` (x, y in the pixels of the given image,
    the keypoint score), as ``detect`` returns them.

    The image is normalised, padded at the bottom/right to a multiple of the detector's
    ``size_divisible`` (zeros after normalisation, as ``Detector.forward`` pads a batch) and given to
    ``detector.detect`` with its own size, so boxes are clipped to the image, not the padding.
    Anything ``detect`` returns that ``export_support.outputs`` leaves out is an error while
    exporting (a file without part of the predictions would be silently wrong).
    """

    one_image: ClassVar[bool] = True
    outputs_meaning: ClassVar[dict[str, dict[str, Any]]] = {
        "boxes": {"dtype": "float32", "shape": ["D", 4],
                  "meaning": "x1, y1, x2, y2 in pixels of the input image (after the resize), clipped to it"},
        "scores": {"dtype": "float32", "shape": ["D"], "meaning": "confidence in [0, 1], descending"},
        "labels": {"dtype": "int64", "shape": ["D"], "meaning": "class index into class_names (0-based)"},
        "masks": {"dtype": "float32", "shape": ["D", "H", "W"],
                  "meaning": "per-detection mask probability in [0, 1] in pixels of the input image (after the "
                             "resize), pasted at its box; threshold 0.5 for the object's pixels; to file pixels "
                             "as the caller steps say"},
        "keypoints": {"dtype": "float32", "shape": ["D", "P", 3],
                      "meaning": "per-detection keypoints: x, y in pixels of the input image (after the resize), "
                                 "then the keypoint score (the heatmap logit, unbounded); to file pixels as the "
                                 "caller steps say"},
    }

    def __init__(self, detector: nn.Module, mean: Sequence[float], std: Sequence[float], dynamic: bool = False) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.detector = detector
        self.dynamic = dynamic
        self.output_names = tuple(detector.export_support.outputs)

    @classmethod
    def for_task(cls, task: Any, prep: Any, dynamic: bool = False) -> DetectorExport:
        return cls(task.detector, prep.mean, prep.std, dynamic=dynamic).eval()

    @classmethod
    def refusal(cls, task: Any, fmt: str, dynamic: bool) -> str | None:
        """Why the detector cannot be exported so (its ``export_support``), or ``None``."""
        name, support = task.hparams.model, task.detector.export_support
        if fmt not in support.formats:
            return f"detector {name!r} cannot be exported to {fmt}: {support.reason}"
        if dynamic and not support.dynamic_size:
            return (f"detector {name!r} cannot be exported with a dynamic input size: {support.reason}; drop "
                    "--dynamic (or give --image_size H W) and resize images to the size in the JSON")
        return None

    @classmethod
    def any_size(cls, task: Any) -> bool:
        return bool(task.detector.export_support.dynamic_size)

    @classmethod
    def model_name(cls, task: Any) -> str:
        return f"{task.hparams.model} on {task.hparams.backbone}"

    @classmethod
    def postprocessing(cls, task: Any) -> dict[str, Any] | None:
        """The detector's score threshold, NMS IoU and detections per image."""
        d = task.detector
        heads = getattr(d, "roi_heads", None)
        if heads is not None:
            return {"score_thresh": heads.score_thresh, "nms_thresh": heads.nms_thresh,
                    "detections_per_img": heads.detections_per_img}
        keys = ("score_thresh", "nms_thresh", "detections_per_img")
        return {k: getattr(d, k) for k in keys if hasattr(d, k)} or None

    @classmethod
    def describe_outputs(cls, names: Sequence[str], num_classes: int) -> list[dict[str, Any]]:
        return [{"name": n, **cls.outputs_meaning.get(n, {"meaning": "see the detector's documentation"})}
                for n in names]

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        x = self.normalize(image)
        h, w = x.shape[-2], x.shape[-1]
        if not self.dynamic:  # a fixed size: plain numbers (an exporter keeps the shapes static)
            h, w = int(h), int(w)
        d = int(self.detector.size_divisible)
        pad_w, pad_h = (d - w % d) % d, (d - h % d) % d
        if self.dynamic:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        elif pad_w or pad_h:  # zeros concatenated: the ONNX exporter keeps the shapes static (not so through Pad)
            n, c = x.shape[0], x.shape[1]
            x = torch.cat([x, x.new_zeros(n, c, h, pad_w)], 3)
            x = torch.cat([x, x.new_zeros(n, c, pad_h, w + pad_w)], 2)
        det = self.detector.detect(x, [(h, w)], None)[0]
        if "roi_masks" in det:
            det = dict(det)
            det["masks"] = paste_roi_masks(det.pop("roi_masks"), det["boxes"], h, w)
        left_out = sorted(set(det) - set(self.output_names))
        if left_out:
            raise RuntimeError(f"{type(self.detector).__name__}.detect returns {left_out}, which its "
                               f"export_support.outputs {self.output_names} does not export")
        return tuple(det[name] for name in self.output_names)


def paste_roi_masks(roi_masks: Tensor, boxes: Tensor, h: int | Tensor, w: int | Tensor) -> Tensor:
    """Per-detection mask probabilities ``[D, M, M]`` (each covering its box, ``boxes`` ``[D, 4]`` xyxy
    pixels) pasted into an ``h x w`` image: ``float [D, h, w]`` in [0, 1]. torchvision's
    ``paste_masks_in_image``, whose traced form (a scripted loop) exports to ONNX and TorchScript;
    ``h``/``w`` may be traced sizes (a dynamic export)."""
    return paste_masks_in_image(roi_masks[:, None].float(), boxes.float(), (h, w))[:, 0]
