"""Processes started from outside (torchrun, SLURM's srun) write into one run folder, even when they
start at different moments and the runs folder changes in between."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from visiontasks.data.detection import write_synthetic_detection

ROOT = Path(__file__).resolve().parents[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    """Until rank 0 listens on MASTER_PORT (it has chosen its run folder and waits for rank 1)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"rank 0 ended early:\n{proc.communicate()[1][-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError("rank 0 never reached the process-group rendezvous")


@pytest.mark.slow
def test_torchrun_ranks_started_apart_agree_on_the_run_folder(tmp_path: Path, port: int) -> None:
    data = write_synthetic_detection(tmp_path / "shapes", "yolo", splits={"train": 2, "val": 4}, image_size=48,
                                     num_classes=2, max_objects=2, background_fraction=0.0, seed=4)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": {"class_path": "visiontasks.tasks.DetectionTask",
                  "init_args": {"model": "yolov1", "backbone": "resnet18",
                                "model_kwargs": {"feature": "layer2", "head": "conv", "grid_size": 6,
                                                 "hidden_channels": 16, "score_thresh": 0.0}}},
        "data": {"class_path": "visiontasks.data.DetectionDataModule",
                 "init_args": {"format": "yolo", "root": str(data), "image_size": 48, "batch_size": 1,
                               "augment": False}},
        "trainer": {"accelerator": "cpu", "devices": 2, "strategy": "ddp", "enable_progress_bar": False,
                    "default_root_dir": str(tmp_path / "runs")},
    }))
    base = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
            "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "0", "TORCHELASTIC_RUN_ID": "corpus",
            "TORCHELASTIC_USE_AGENT_STORE": "False", "TORCHELASTIC_RESTART_COUNT": "0",
            "TORCHELASTIC_MAX_RESTARTS": "0"}
    for key in ("VISIONTASKS_RUN_VERSION", "SLURM_PROCID", "NODE_RANK"):
        base.pop(key, None)
    cmd = [sys.executable, "-m", "visiontasks.cli", "predict", "--config", str(cfg)]

    def start(rank: int) -> subprocess.Popen:
        env = {**base, "RANK": str(rank), "LOCAL_RANK": str(rank), "ROLE_RANK": str(rank)}
        return subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    rank0 = start(0)
    try:
        _wait_for_port(port, rank0)
        # rank 0 has chosen version_0; before rank 1 starts, another run of the same config takes
        # that folder (rank 1 alone, scanning the disk, would now pick version_1)
        (tmp_path / "runs/tiny/version_0").mkdir(parents=True, exist_ok=True)
        rank1 = start(1)
        out1 = rank1.communicate(timeout=300)
        out0 = rank0.communicate(timeout=300)
    finally:
        for proc in (rank0, locals().get("rank1")):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert rank0.returncode == 0, out0[1][-3000:]
    assert rank1.returncode == 0, out1[1][-3000:]
    assert sorted(p.name for p in (tmp_path / "runs/tiny").iterdir()) == ["version_0"]
    predictions = tmp_path / "runs/tiny/version_0/predict/predictions"
    drawn = sorted(p.name for p in predictions.glob("*.png"))  # each rank draws its own images
    assert len(drawn) == 4, drawn
    assert (predictions / "results.json").is_file()
