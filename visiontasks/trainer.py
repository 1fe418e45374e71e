"""The Trainer that ``visiontasks fit|validate|test|predict`` build: Lightning's own, with one more
value for ``precision``.

``precision: auto`` (the default) is resolved by :func:`resolve_precision` before Lightning sees it:

* ``bf16-mixed`` when the run lands on a CUDA device that supports bfloat16
  (``torch.cuda.is_bf16_supported()``: Ampere and newer);
* ``16-mixed`` on other CUDA devices (float16 autocast with a gradient scaler);
* ``32-true`` on the CPU, MPS and anything else.

The run lands on CUDA when ``accelerator`` is ``auto``, ``gpu`` or ``cuda`` (or a CUDA accelerator
object) and ``torch.cuda.is_available()``. Any other ``precision`` value is passed on unchanged: an
explicit precision wins.
"""

from __future__ import annotations

from typing import Any, Literal

import lightning.pytorch as pl
from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT

_CUDA_ACCELERATORS = ("auto", "gpu", "cuda")


def runs_on_cuda(accelerator: Any = "auto") -> bool:
    """Whether a Trainer with this ``accelerator`` runs on a CUDA device here."""
    import torch

    if not torch.cuda.is_available():
        return False
    if isinstance(accelerator, str):
        return accelerator.lower() in _CUDA_ACCELERATORS
    if accelerator is None:
        return True  # Lightning's default is "auto"
    return type(accelerator).__name__ == "CUDAAccelerator"


def resolve_precision(precision: Any, accelerator: Any = "auto") -> Any:
    """``precision`` for Lightning: ``"auto"`` becomes ``bf16-mixed`` on a bf16-capable CUDA device,
    ``16-mixed`` on another CUDA device and ``32-true`` elsewhere; any other value is returned as is."""
    if precision != "auto":
        return precision
    if not runs_on_cuda(accelerator):
        return "32-true"
    import torch

    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


class VisionTrainer(pl.Trainer):
    """Lightning's Trainer with ``precision: auto`` (the default; see :func:`resolve_precision`)."""

    def __init__(self, *, precision: _PRECISION_INPUT | Literal["auto"] | None = "auto", **kwargs: Any) -> None:
        """Lightning's Trainer, ``precision`` resolved first.

        Args:
            precision: ``auto`` (bf16-mixed on a bf16-capable CUDA device, 16-mixed on another CUDA
                device, 32-true on CPU/MPS) or any precision Lightning accepts, used as given.
            **kwargs: the other options of :class:`lightning.pytorch.Trainer`.
        """
        super().__init__(precision=resolve_precision(precision, kwargs.get("accelerator", "auto")), **kwargs)
