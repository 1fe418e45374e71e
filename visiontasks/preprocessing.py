"""What turns a file's image into a model input, saved in every checkpoint.

A datamodule states its evaluation preprocessing as a :class:`Preprocessing` (``preprocessing()``);
the task stores it in the checkpoint (``checkpoint["preprocessing"]``), so a trained model can
predict or be exported without the data config it was trained with. Plain data: no torch here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

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
    mean: tuple[float, ...] = field(default=(0.485, 0.456, 0.406))
    std: tuple[float, ...] = field(default=(0.229, 0.224, 0.225))
    in_chans: int = 3

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.resize != "none" and self.image_size is None:
            raise ValueError(f"resize={self.resize!r} needs an image_size")
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise ValueError(f"mean/std need {self.in_chans} values, got {self.mean} / {self.std}")

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


def pair(size: int | list[int] | tuple[int, ...] | None) -> tuple[int, int] | None:
    """``448 -> (448, 448)``; ``[h, w] -> (h, w)``; ``None -> None``."""
    if size is None:
        return None
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[1])
