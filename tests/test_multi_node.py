"""Two "nodes" on one machine: ``torchrun --nnodes 2 --node_rank {0,1} --nproc-per-node 1`` around the
real ``visiontasks fit`` (``-m visiontasks.cli``) with ``--trainer.num_nodes 2 --trainer.devices 1
--trainer.strategy ddp`` on CPU (gloo), as on a cluster where each node runs its own launcher.

Lightning sees torchrun's variables (``RANK``, ``GROUP_RANK``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``)
and runs under its ``TorchElasticEnvironment``. Checked: one run folder and one ``last.ckpt``; the
validation metrics logged by the 2-node fit equal ``visiontasks validate`` of its ``last.ckpt`` in one
process (same images: 4, 2 a node, no padding repeats); ``--ckpt_path last`` resumes with the
global step where the first run stopped.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from visiontasks.cli import main as cli_main
from visiontasks.data.detection import write_synthetic_detection
from visiontasks.data.segmentation import write_synthetic_segmentation

sys.path.insert(0, str(Path(__file__).parent))
from conftest import free_port  # noqa: E402
from detection_ddp_script import TINY  # noqa: E402  (the 2-process DDP test's tiny Faster R-CNN)

ROOT = Path(__file__).resolve().parents[1]
SIZE, TRAIN, VAL = 64, 4, 4  # 4 training images, batch 1, 2 nodes: 2 steps an epoch


def detector_config(tmp_path: Path) -> dict[str, Any]:
    data = write_synthetic_detection(tmp_path / "shapes_det", "coco", splits={"train": TRAIN, "val": VAL},
                                     image_size=SIZE, num_classes=2, max_objects=2, size_range=(0.2, 0.35),
                                     background_fraction=0.0, seed=1)
    return {
        "model": {"class_path": "visiontasks.tasks.DetectionTask",
                  "init_args": {"model": "faster_rcnn", "backbone": "resnet18",
                                "model_kwargs": {**TINY["faster_rcnn"], "score_thresh": 0.0},  # some matches
                                "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 2e-3}}}},
        "data": {"class_path": "visiontasks.data.DetectionDataModule",
                 "init_args": {"format": "coco", "root": str(data), "image_size": SIZE, "batch_size": 1,
                               "eval_batch_size": 1, "augment": False, "num_workers": 0}},
    }


def segmenter_config(tmp_path: Path) -> dict[str, Any]:
    root = tmp_path / "shapes_seg"
    write_synthetic_segmentation(root, counts=(TRAIN, VAL, 2), image_size=SIZE, num_shapes=3, seed=1)
    return {
        "model": {"class_path": "visiontasks.tasks.SegmentationTask",
                  "init_args": {"model": "fcn8s", "backbone": "resnet18", "fc_channels": 16, "fc_kernel_size": 1,
                                "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 2e-3}}}},
        "data": {"class_path": "visiontasks.data.SegmentationDataModule",
                 "init_args": {"format": "synthetic", "root": str(root), "synthetic": {"counts": [TRAIN, VAL, 2],
                               "image_size": SIZE, "num_shapes": 3}, "seed": 1,
                               "crop_size": SIZE, "batch_size": 1, "eval_batch_size": 1, "num_workers": 0}},
    }


def write_config(tmp_path: Path, cfg: dict[str, Any]) -> Path:
    cfg["seed_everything"] = 0
    cfg["trainer"] = {"max_epochs": 1, "num_sanity_val_steps": 0, "enable_progress_bar": False,
                      "enable_model_summary": False, "log_every_n_steps": 1,
                      "default_root_dir": str(tmp_path / "runs")}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def torchrun_nodes(args: list[str], cwd: Path, nodes: int = 2, timeout: float = 300) -> None:
    """``visiontasks ARGS`` under one ``torchrun`` per node (1 process each), all on this machine."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for key in ("VISIONTASKS_RUN_VERSION", "SLURM_PROCID", "SLURM_NTASKS", "NODE_RANK", "RANK", "LOCAL_RANK",
                "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nodes), "--node_rank", str(rank),
             "--nproc-per-node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port),
             "-m", "visiontasks.cli", *args,
             "--trainer.num_nodes", str(nodes), "--trainer.devices", "1", "--trainer.strategy", "ddp",
             "--trainer.accelerator", "cpu"],
            env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for rank in range(nodes)
    ]
    try:
        outs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for rank, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"node {rank}:\n{out[-4000:]}"


def last_row_with(path: Path, key: str) -> dict[str, float]:
    """The last row of a CSVLogger file that holds ``key``, as floats (empty cells left out)."""
    rows = [r for r in csv.DictReader(path.open()) if r.get(key)]
    assert rows, f"{path} has no {key}"
    return {k: float(v) for k, v in rows[-1].items() if v not in ("", None)}


@pytest.mark.slow
@pytest.mark.parametrize(("make", "metric"), [(detector_config, "val/mAP50"), (segmenter_config, "val/mIoU")],
                         ids=["detector", "segmenter"])
def test_two_nodes_by_torchrun_fit_validate_and_resume(make: Any, metric: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, make(tmp_path))
    torchrun_nodes(["fit", "--config", str(config)], cwd=tmp_path)

    runs = tmp_path / "runs" / "tiny"
    assert sorted(p.name for p in runs.iterdir()) == ["version_0"]  # both nodes wrote into rank 0's folder
    run = runs / "version_0"
    assert list(run.rglob("last*.ckpt")) == [run / "checkpoints" / "last.ckpt"]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == TRAIN // 2  # 4 images, batch 1, 2 processes
    logged = last_row_with(run / "metrics.csv", metric)

    # the same checkpoint in one process, on the same validation images
    assert cli_main(["validate", "--config", str(config), "--ckpt_path", "last",
                     "--trainer.accelerator", "cpu", "--trainer.devices", "1"]) == 0
    single = last_row_with(run / "validate" / "metrics.csv", metric)
    keys = sorted(k for k in logged if k.startswith("val/") and k in single)
    assert metric in keys and len(keys) >= 2, keys
    assert logged[metric] > 0, "a check that cannot fail needs some matched detections / pixels"
    for key in keys:
        assert single[key] == pytest.approx(logged[key], abs=1e-5), key

    # resume on 2 nodes: the second epoch starts at the first run's global step
    torchrun_nodes(["fit", "--config", str(config), "--ckpt_path", "last", "--trainer.max_epochs", "2"], cwd=tmp_path)
    assert sorted(p.name for p in runs.iterdir()) == ["version_0"]
    resumed = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert resumed["global_step"] == 2 * (TRAIN // 2) and resumed["epoch"] == 1
    assert list(run.glob("metrics.part*.csv"))  # the first run's metrics were kept
