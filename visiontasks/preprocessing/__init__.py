"""What turns a file's image into a model input, saved in every checkpoint.

A datamodule states its evaluation preprocessing as a :class:`Preprocessing` (``preprocessing()``);
the task stores it in the checkpoint (``checkpoint["preprocessing"]``), so a trained model can
predict or be exported without the data config it was trained with. Plain data: no torch here
(the albumentations resize is built by :meth:`Preprocessing.resize_ops`, imported when called).

The geometry rules stand here once: :func:`pair` (an int or ``[H, W]`` -> ``(H, W)``),
:meth:`Preprocessing.scale` (how the resize scales a file), :meth:`Preprocessing.canvas` (the
model input it becomes) and :meth:`Preprocessing.working_scale` (how much of a file the pipeline
can use, for caches).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from visiontasks.errors import InvalidInputError

# ImageNet statistics of 0..1 RGB pixels: the default normalisation of every task's transforms
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RESIZE_MODES = ("stretch", "letterbox", "shortest_edge", "none")


@dataclass(frozen=True)
class Preprocessing:
    """Evaluation preprocessing of a ``uint8 [H, W, C]`` image.

    Attributes:
        resize: ``stretch`` (to ``image_size`` exactly), ``letterbox`` (longer side to fit,
            aspect kept, padded with the mean colour to ``image_size``), ``shortest_edge``
            (shorter side to ``image_size[0]`` unless the longer exceeds ``image_size[1]``, no
            padding) or ``none`` (the file's own size).
        image_size: ``(H, W)`` for ``stretch``/``letterbox``; ``(min, max)`` sides for
            ``shortest_edge``; ``None`` for ``none``.
        mean, std: per-channel normalisation of pixel values scaled to [0, 1].
        in_chans: 1 (grey) or 3 (RGB); images are converted to it.
    """

    resize: str = "none"
    image_size: tuple[int, int] | None = None
    mean: tuple[float, ...] = field(default=IMAGENET_MEAN)
    std: tuple[float, ...] = field(default=IMAGENET_STD)
    in_chans: int = 3

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.resize != "none" and self.image_size is None:
            raise ValueError(f"resize={self.resize!r} needs an image_size")
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise ValueError(f"mean/std need {self.in_chans} values, got {self.mean} / {self.std}")

    def scale(self, size: tuple[int, int]) -> tuple[float, float]:
        """``(sx, sy)``: how the resize scales a file of ``size`` (H, W) pixels (no augmentation),
        e.g. to compare box sizes with a model's anchors in model-input pixels."""
        if self.resize == "none" or self.image_size is None:
            return 1.0, 1.0
        (th, tw), (h, w) = self.image_size, size
        if self.resize == "letterbox":
            s = min(th / h, tw / w)
            return s, s
        if self.resize == "shortest_edge":  # (min, max): shorter side to min unless the longer passes max
            s = min(th / min(h, w), tw / max(h, w))
            return s, s
        return tw / w, th / h  # stretch

    def canvas(self, size: tuple[int, int]) -> tuple[int, int]:
        """(H, W) of the model input a file of ``size`` (H, W) becomes (the padded canvas for
        ``letterbox``); with ``none`` / ``shortest_edge`` a batch pads to its largest image,
        unknown here, so the resized image itself."""
        if self.resize in ("letterbox", "stretch") and self.image_size is not None:
            return self.image_size
        sx, sy = self.scale(size)
        return int(round(size[0] * sy)), int(round(size[1] * sx))

    def working_scale(self, size: tuple[int, int], zoom: float = 1.0) -> float:
        """How much of a file of ``size`` (H, W) the pipeline can use: the larger scale its resize
        applies times ``zoom`` (the largest training scale; 1 for evaluation)."""
        if self.resize == "none" or self.image_size is None:
            return 1.0
        return max(self.scale(size)) * max(1.0, zoom)

    def resize_ops(self) -> list[Any]:
        """The albumentations ops of the resize (``[]`` for ``none``); ``letterbox`` pads with the
        mean colour (0 after normalising). Boxes and masks follow."""
        from visiontasks.preprocessing.albumentations_ops import resize_ops

        return resize_ops(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (the checkpoint must load with ``weights_only=True``)."""
        out = asdict(self)
        out["image_size"] = list(self.image_size) if self.image_size is not None else None
        out["mean"], out["std"] = list(self.mean), list(self.std)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preprocessing":
        size = data.get("image_size")
        return cls(
            resize=str(data.get("resize", "none")),
            image_size=(int(size[0]), int(size[1])) if size is not None else None,
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            in_chans=int(data.get("in_chans", 3)),
        )


def pair(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``448 -> (448, 448)``; ``[h, w] -> (h, w)``; ``None -> None``; any other length is refused."""
    if size is None:
        return None
    if isinstance(size, int):
        return size, size
    if len(size) != 2:
        raise InvalidInputError(f"a size is an int or [H, W], got {size}")
    return int(size[0]), int(size[1])


def preprocessing_of(
    image_size: int | Sequence[int] | None,
    resize: str,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> "Preprocessing":
    """The :class:`Preprocessing` of a datamodule's settings (``image_size`` an int or pair, dropped
    for ``resize: none``; channels from ``mean``); an unknown ``resize`` or a missing size is an
    :class:`~visiontasks.errors.InvalidInputError`."""
    if resize not in RESIZE_MODES:
        raise InvalidInputError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    if resize != "none" and image_size is None:
        raise InvalidInputError(f"resize={resize!r} needs image_size")
    size = None if resize == "none" else pair(image_size)
    return Preprocessing(resize, size, tuple(float(m) for m in mean), tuple(float(s) for s in std), len(mean))
