"""Detection training: tiny overfit runs, bf16-mixed fits, 2-process DDP, predict files, CLI smoke."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from PIL import Image

from torchvision.ops import box_iou

from visiontasks.data.detection import DetectionDataModule, detection_collate, write_synthetic_detection
from visiontasks.heads.detector import DETECTORS, Detector
from visiontasks.metrics.detection import make_map_metric
from visiontasks.outputs import CocoResultsWriter, DetectionDrawingWriter
from visiontasks.tasks.detection import DetectionTask

HERE = Path(__file__).parent
CONFIGS = HERE.parent / "configs" / "detection"

sys.path.insert(0, str(HERE))
from detection_ddp_script import TINY, make  # noqa: E402


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_detection(tmp_path_factory.mktemp("shapes") / "coco", "coco",
                                     splits={"train": 8, "val": 6}, image_size=64, num_classes=2,
                                     max_objects=2, size_range=(0.2, 0.35), background_fraction=0.0, seed=1)


def _trainer(root: Path, **kw) -> pl.Trainer:
    args = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(root))
    args.update(kw)
    return pl.Trainer(**args)


# -- learning ---------------------------------------------------------------------------------------
OVERFIT = {  # the shapes configs' layouts (stride-8 features), shrunk
    "faster_rcnn": (dict(feature="layer2", anchor_sizes=[16, 32, 48], representation_size=128, roi_op="pool",
                         rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=100,
                         rpn_pre_nms_top_n_test=200, rpn_post_nms_top_n_test=50,
                         rpn_batch_size_per_image=64, box_batch_size_per_image=32), 45, 3e-3),
    "yolov1": (dict(feature="layer2", head="conv", grid_size=8, hidden_channels=64, dropout=0.0,
                    activation="sigmoid"), 30, 3e-3),
    "ssd": (dict(image_size=64, extra_channels=[128, 64], detections_per_img=50), 50, 3e-3),
}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["faster_rcnn", "yolov1", "ssd"])
def test_tiny_overfit(model: str, shapes: Path) -> None:
    """A few images, many steps: the loss falls and the detections land on the boxes."""
    torch.manual_seed(0)
    kwargs, steps, lr = OVERFIT[model]
    dm = DetectionDataModule(format="coco", root=str(shapes), image_size=64, augment=False, batch_size=4)
    dm.setup("fit")
    images, targets = detection_collate([dm.datasets["train"][i] for i in range(4)])
    task = DetectionTask(model=model, backbone="resnet18", num_classes=2, model_kwargs=kwargs)
    det = task.detector
    opt = torch.optim.AdamW(det.parameters(), lr=lr)
    det.train()
    losses = []
    for _ in range(steps):
        loss = sum(det(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert sum(losses[-5:]) / 5 < 0.3 * sum(losses[:5]) / 5, losses[::10]
    det.eval()
    with torch.no_grad():
        preds = det(images)
    metric = make_map_metric()
    metric.update(preds, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets])
    assert float(metric.compute()["map_50"]) >= 0.9
    for p, t in zip(preds, targets):  # the best detection of each image is one of its objects
        best = p["scores"].argmax()
        overlaps = box_iou(p["boxes"][best : best + 1], t["boxes"])[0]
        assert float(overlaps.max()) > 0.5 and int(t["labels"][overlaps.argmax()]) == int(p["labels"][best])


@pytest.mark.slow
@pytest.mark.parametrize("model", ["faster_rcnn", "yolov1", "ssd"])
def test_bf16_mixed_fit(model: str, shapes: Path, tmp_path: Path) -> None:
    task, dm = make(model, str(shapes))
    trainer = _trainer(tmp_path, precision="bf16-mixed", max_epochs=1, limit_train_batches=2,
                       limit_val_batches=1)
    trainer.fit(task, dm)
    m = trainer.callback_metrics
    assert torch.isfinite(m["train/loss"]) and "val/mAP" in m and "val/mAP50" in m and "val/mAR100" in m
    assert any(k.startswith("val/AP/") for k in m)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["faster_rcnn", "yolov1", "ssd"])
def test_ddp_two_processes_map_equals_single_process(model: str, shapes: Path, tmp_path: Path) -> None:
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    for key in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "RANK"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, str(HERE / "detection_ddp_script.py"), model, str(shapes), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "metrics.json").read_text())
    assert result["world_size"] == 2 and result["val_images"] == 6  # 3 per process, no padding repeats
    ddp = result["metrics"]
    # the same weights, validated in one process on the same validation images
    task, dm = make(model, str(shapes))
    task.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
    single = _trainer(tmp_path / "single").validate(task, dm, verbose=False)[0]
    assert ddp["val/mAP50"] > 0, "a non-trivial check needs some matched detections"
    for key in ("val/mAP", "val/mAP50", "val/mAP75", "val/mAR100"):
        assert ddp[key] == pytest.approx(float(single[key]), abs=1e-6), key


# -- task plumbing ----------------------------------------------------------------------------------
def test_predict_writes_coco_results_and_pngs(shapes: Path, tmp_path: Path) -> None:
    task, dm = make("yolov1", str(shapes))
    task.detector.score_thresh = -1.0  # keep every candidate box of the untrained model
    # draw everything the untrained model finds
    writers = [CocoResultsWriter(), DetectionDrawingWriter(draw_score_thresh=0.0)]
    out = _trainer(tmp_path, callbacks=writers).predict(task, dm)
    pred_dir = tmp_path / "predictions"
    results = json.loads((pred_dir / "results.json").read_text())
    pngs = sorted(pred_dir.glob("*.png"))
    assert len(pngs) == 6 and len(out) == 3 and len(out[0]) == 2
    assert results and {r["category_id"] for r in results} <= {1, 2}  # COCO category ids of the file
    ann = json.loads((shapes / "annotations/instances_val.json").read_text())
    ids = {img["id"]: img for img in ann["images"]}
    for r in results:
        img = ids[r["image_id"]]
        x, y, w, h = r["bbox"]
        assert 0 <= x and 0 <= y and x + w <= img["width"] + 0.01 and y + h <= img["height"] + 0.01
        assert 0 <= r["score"] <= 1
    first = out[0][0]
    original = Image.open(first["path"])
    drawn = Image.open(pred_dir / f"{first['image_id']:06d}_{Path(first['path']).stem}.png")
    assert drawn.size == original.size and drawn.mode == "RGB"
    assert list(drawn.getdata()) != list(original.convert("RGB").getdata())  # boxes were drawn


def test_missing_proposals_error_names_the_setting(shapes: Path) -> None:
    class NeedsProposals(Detector):
        needs_proposals = True

        def __init__(self, backbone, num_classes):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, images, targets=None, proposals=None):
            return {"loss": self.w.sum() + sum(p.sum() for p in proposals)}

    DETECTORS["_needs_proposals_test"] = NeedsProposals
    try:
        task = DetectionTask(model="_needs_proposals_test", backbone="resnet18", num_classes=2)
        images = [torch.zeros(3, 32, 32)]
        with pytest.raises(ValueError, match=r"data\.init_args\.proposals"):
            task.training_step((images, [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]), 0)
        target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
                  "proposals": torch.ones(2, 4)}
        assert float(task.training_step((images, [target]), 0)) == 8.0  # proposals reached the detector
    finally:
        DETECTORS.pop("_needs_proposals_test")


def test_num_classes_must_match_the_data(shapes: Path, tmp_path: Path) -> None:
    dm = DetectionDataModule(format="coco", root=str(shapes), image_size=64)
    task = DetectionTask(model="yolov1", backbone="resnet18", num_classes=3, model_kwargs=TINY["yolov1"])
    with pytest.raises(ValueError, match="num_classes=3 but the data has 2 classes"):
        _trainer(tmp_path).validate(task, dm)


@pytest.mark.slow
@pytest.mark.parametrize("config", ["yolov1_resnet18_shapes.yaml", "faster_rcnn_resnet18_shapes.yaml",
                                    "ssd_shapes.yaml"])
def test_cli_fit_smoke(config: str, tmp_path: Path) -> None:
    """The shipped config through the real entry point, shrunk to a couple of steps."""
    cli = pytest.importorskip("visiontasks.cli")
    cfg = yaml.safe_load((CONFIGS / config).read_text())
    cfg["data"]["init_args"].update(root=str(tmp_path / "data"), image_size=64, batch_size=2)
    cfg["data"]["init_args"]["synthetic"].update(splits={"train": 4, "val": 2}, image_size=64)
    cfg["trainer"].update(max_epochs=1, limit_train_batches=2, limit_val_batches=1, log_every_n_steps=1)
    path = tmp_path / config
    path.write_text(yaml.safe_dump(cfg))
    cli.main(["fit", "--config", str(path), "--trainer.default_root_dir", str(tmp_path / "runs")])
    run = next((tmp_path / "runs").glob("*/version_0"))
    assert (run / "checkpoints" / "last.ckpt").is_file()
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "val/mAP50" in header and "val/mAR100" in header and "train/loss_step" in header
