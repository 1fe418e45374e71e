"""GPU utilisation over a block of code, for the benchmarks: ``with GpuSampler() as gpu: ...`` then
``gpu.util`` (mean %, ``None`` without a GPU) and ``gpu.memory_mib`` (peak used MiB of the device).

Sampled by ``nvidia-smi --query-gpu ... -lms`` in the background (it watches the device, so it sees
work done by subprocesses too), or by ``torch.cuda.utilization()`` (pynvml) polled in a thread when
there is no ``nvidia-smi``; neither on a CPU machine, where both figures stay ``None``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from typing import Any


def _device_index() -> str:
    """The physical index of the first visible GPU (``CUDA_VISIBLE_DEVICES`` may remap it)."""
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
    return first if first.isdigit() else "0"


class GpuSampler:
    """Mean GPU utilisation (%) and peak memory used (MiB) while the ``with`` block runs."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []  # (utilisation %, memory MiB)
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi"):
            cmd = ["nvidia-smi", "-i", _device_index(), "--query-gpu=utilization.gpu,memory.used",
                   "--format=csv,noheader,nounits", "-lms", str(int(self.interval_s * 1000))]
            self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self._thread = threading.Thread(target=self._read_smi, daemon=True)
        elif self._torch_utilization() is not None:
            self._thread = threading.Thread(target=self._poll_torch, daemon=True)
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def util(self) -> float | None:
        return sum(u for u, _ in self.samples) / len(self.samples) if self.samples else None

    @property
    def memory_mib(self) -> float | None:
        return max(m for _, m in self.samples) if self.samples else None

    def _read_smi(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            parts = [p.strip() for p in line.split(",")]
            try:
                self.samples.append((float(parts[0]), float(parts[1])))
            except (ValueError, IndexError):
                continue  # "[N/A]" on some devices

    @staticmethod
    def _torch_utilization() -> float | None:
        try:
            import torch

            if not torch.cuda.is_available():
                return None
            return float(torch.cuda.utilization())
        except Exception:  # noqa: BLE001 - no pynvml, no driver: no figure
            return None

    def _poll_torch(self) -> None:
        import torch

        while not self._stop.wait(self.interval_s):
            util = self._torch_utilization()
            if util is not None:
                used = (torch.cuda.mem_get_info()[1] - torch.cuda.mem_get_info()[0]) / 2**20
                self.samples.append((util, used))


def fmt_util(util: float | None) -> str:
    """``"87%"``, or ``"n/a"`` without a GPU."""
    return "n/a" if util is None else f"{util:.0f}%"
