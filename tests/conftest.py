"""Shared test settings: small thread count (the CI machine has 2 cores), no network."""

from __future__ import annotations

import os
import socket
from pathlib import Path

# Lightning gives its logger a StreamHandler bound to sys.stderr when first imported. visiontasks.cli
# no longer imports Lightning, so without this the first import would happen inside a test, under
# pytest's capture, and later tests would log into that test's closed stream ("Logging error").
import lightning.pytorch  # noqa: F401
import pytest
import torch

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# Under pytest-xdist each worker gets one thread: the workers already fill the cores.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, os.cpu_count() or 1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def port() -> int:
    return free_port()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` run first, and tests marked ``gpu`` need CUDA (skipped where
    ``torch.cuda.is_available()`` is False).

    Slow first: under ``pytest -n 2`` the long multi-process and learning runs then start while the
    many short tests fill the other worker, instead of one of them starting last and leaving a worker
    idle for its whole length (a stable sort: the order within each group is kept).
    """
    items.sort(key=lambda item: "slow" not in item.keywords)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def write_image_folder(root: Path, n: int, size: tuple[int, int], grid: tuple[int, int]) -> Path:
    """``n`` smooth RGB PNGs of ``size`` (H, W) in ``root/train/c{0,1}/`` (random ``grid`` colours
    upsampled bilinearly), seeded: the ImageFolder of the cache and in-memory tests."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for k in range(n):
        cls = root / "train" / f"c{k % 2}"
        cls.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(rng.integers(0, 255, (*grid, 3), dtype=np.uint8)).resize(size[::-1], Image.BILINEAR)
        img.save(cls / f"{k}.png")
    return root
