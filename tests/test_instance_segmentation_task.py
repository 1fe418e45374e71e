"""Instance segmentation through the real entry point (fit, test, predict on tiny synthetic shapes
with masks), the task's refusal of box-only detectors, and (slow) the mask branch learning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from visiontasks.data.detection import DetectionDataModule, detection_collate
from visiontasks.metrics.detection import make_map_metric
from visiontasks.tasks import InstanceSegmentationTask

CONFIG = Path(__file__).parent.parent / "configs" / "detection" / "mask_rcnn_resnet18_shapes.yaml"
TINY = dict(anchor_sizes=[16, 32, 48], representation_size=64, rpn_pre_nms_top_n_train=200,
            rpn_post_nms_top_n_train=50, rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=30,
            rpn_batch_size_per_image=32, box_batch_size_per_image=16, mask_layers=[16, 16], mask_predictor_channels=16)


def test_fit_test_predict_through_the_cli(tmp_path: Path) -> None:
    """The shipped config, shrunk: fit writes checkpoints and box + mask metrics; test reads the
    checkpoint; predict writes COCO results with RLE masks and PNGs with the masks drawn, at the
    images' own size."""
    cli = pytest.importorskip("visiontasks.cli")
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["model"]["init_args"]["model_kwargs"].update(TINY, score_thresh=0.0, detections_per_img=10)
    cfg["data"]["init_args"].update(root=str(tmp_path / "data"), image_size=64, batch_size=2, test="val")
    cfg["data"]["init_args"]["synthetic"].update(splits={"train": 4, "val": 2}, image_size=48)
    cfg["trainer"].update(max_epochs=1, limit_train_batches=2, log_every_n_steps=1, enable_progress_bar=False)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    runs = ["--trainer.default_root_dir", str(tmp_path / "runs")]
    cli.main(["fit", "--config", str(path), *runs])
    run = next((tmp_path / "runs").glob("*/version_0"))
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "val/mAP50" in header and "val/mask_mAP50" in header and "val/mask_AP/circle" in header
    assert "train/loss_mask" in header
    ckpt = run / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    cli.main(["test", "--config", str(path), "--ckpt_path", str(ckpt), *runs])
    cli.main(["predict", "--config", str(path), "--ckpt_path", str(ckpt), *runs])
    results_file = next((tmp_path / "runs").rglob("predictions/results.json"))
    results = json.loads(results_file.read_text())
    assert results and all(r["segmentation"]["size"] == [48, 48] for r in results)
    from pycocotools import mask as mask_utils

    assert mask_utils.decode(results[0]["segmentation"]).shape == (48, 48)
    pngs = sorted(results_file.parent.glob("*.png"))
    assert len(pngs) == 2 and all(Image.open(p).size == (48, 48) for p in pngs)
    # the Python API gives each detection its mask, decoded in file pixels, pasted inside its box
    from visiontasks import load_model

    image_file = next(p for p in (tmp_path / "data").rglob("*.png") if "val" in str(p))
    got = load_model(ckpt, device="cpu").predict([image_file])[0]
    assert got.masks is not None and got.masks.dtype == torch.bool
    assert got.masks.shape == (len(got.scores), 48, 48) and len(got.scores) > 0
    for mask, box in zip(got.masks, got.boxes):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        if len(xs):
            assert xs.min() >= box[0].floor() - 1 and xs.max() <= box[2].ceil() + 1
            assert ys.min() >= box[1].floor() - 1 and ys.max() <= box[3].ceil() + 1
    assert got.plot().shape == (48, 48, 3)


def test_refuses_a_detector_without_masks_and_data_without_masks() -> None:
    with pytest.raises(ValueError, match="model 'faster_rcnn' returns no masks"):
        InstanceSegmentationTask(model="faster_rcnn", num_classes=2)
    task = InstanceSegmentationTask(num_classes=2, model_kwargs=TINY).eval()
    target = {"boxes": torch.tensor([[2.0, 2.0, 20.0, 20.0]]), "labels": torch.tensor([0])}
    with torch.no_grad(), pytest.raises(ValueError, match=r"data\.init_args\.masks: true"):
        task.validation_step(([torch.zeros(3, 32, 32)], [target]), 0)


@pytest.mark.slow
def test_mask_branch_learns_the_pixels(tmp_path: Path) -> None:
    """Four images, many steps: box and mask AP50 on them reach 0.9 (the masks are the shapes' own)."""
    torch.manual_seed(0)
    dm = DetectionDataModule(format="coco", root=str(tmp_path / "s"), image_size=64, augment=False, masks=True,
                             synthetic=dict(splits={"train": 4, "val": 1}, image_size=64, num_classes=2,
                                            max_objects=2, size_range=(0.2, 0.35), background_fraction=0.0, seed=1))
    dm.prepare_data()
    dm.setup("fit")
    images, targets = detection_collate([dm.datasets["train"][i] for i in range(4)])
    kwargs = dict(TINY, feature="layer2", roi_op="pool", representation_size=128, mask_layers=[32, 32, 32, 32],
                  mask_predictor_channels=32)
    det = InstanceSegmentationTask(backbone="resnet18", num_classes=2, model_kwargs=kwargs).detector
    opt = torch.optim.AdamW(det.parameters(), lr=3e-3)
    det.train()
    for _ in range(60):
        loss = sum(det(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    det.eval()
    with torch.no_grad():
        preds = det(images)
    metric = make_map_metric(iou_type=("bbox", "segm"))
    metric.update([{**p, "masks": p["masks"] >= 0.5} for p in preds],
                  [{"boxes": t["boxes"], "labels": t["labels"], "masks": t["masks"].bool()} for t in targets])
    result = metric.compute()
    assert float(result["bbox_map_50"]) >= 0.9 and float(result["segm_map_50"]) >= 0.9, result


def test_drawing_fills_the_masks_at_the_file_size(tmp_path: Path) -> None:
    """The drawn PNG has the file's size and the mask's pixels take the class colour (alpha 0.5),
    while pixels outside every mask and box keep the file's."""
    from pycocotools import mask as mask_utils

    from visiontasks.outputs import DetectionDrawingWriter
    from visiontasks.outputs.drawing import class_colours

    Image.fromarray(np.zeros((200, 300, 3), np.uint8)).save(tmp_path / "a.png")
    mask = np.zeros((200, 300), np.uint8)
    mask[60:160, 80:240] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    pred = [{"image_id": 1, "path": str(tmp_path / "a.png"), "boxes": torch.tensor([[80.0, 60.0, 240.0, 160.0]]),
             "scores": torch.tensor([0.9]), "labels": torch.tensor([1]), "segmentation": [rle]}]
    (tmp_path / "out").mkdir()
    DetectionDrawingWriter().write_images(pred, ["a", "b"], tmp_path / "out")
    drawn = np.asarray(Image.open(tmp_path / "out" / "000001_a.png"))
    assert drawn.shape == (200, 300, 3)
    colour = np.array(class_colours(2)[1])
    np.testing.assert_allclose(drawn[140, 200], colour * 0.5, atol=1)  # inside the mask, below the label
    assert (drawn[190, 10] == 0).all()


@pytest.mark.slow
def test_ddp_two_processes_box_and_mask_ap_equal_single_process(tmp_path: Path) -> None:
    """A 2-process CPU DDP fit + validate (tests/detection_ddp_script.py); the same weights validated
    in one process give the same box and mask AP (masks are gathered as COCO RLE by torchmetrics)."""
    import os
    import socket
    import subprocess
    import sys

    from visiontasks.data.detection import write_synthetic_detection

    here = Path(__file__).parent
    sys.path.insert(0, str(here))
    from detection_ddp_script import make

    root = write_synthetic_detection(tmp_path / "data", "coco", splits={"train": 8, "val": 6}, image_size=64,
                                     num_classes=2, max_objects=2, size_range=(0.2, 0.35), background_fraction=0.0,
                                     seed=1, masks=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(here.parent), os.environ.get("PYTHONPATH", "")])}
    for key in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "RANK"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, str(here / "detection_ddp_script.py"), "mask_rcnn", str(root),
                           str(tmp_path)], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "metrics.json").read_text())
    assert result["world_size"] == 2 and result["val_images"] == 6
    ddp = result["metrics"]
    task, dm = make("mask_rcnn", str(root))
    task.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
    import lightning.pytorch as pl

    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path / "s"))
    single = trainer.validate(task, dm, verbose=False)[0]
    assert ddp["val/mAP50"] > 0 and ddp["val/mask_mAP50"] > 0, "a non-trivial check needs matched detections"
    for key in ("val/mAP", "val/mAP50", "val/mask_mAP", "val/mask_mAP50", "val/mask_mAR100"):
        assert ddp[key] == pytest.approx(float(single[key]), abs=1e-6), key


def test_bf16_mixed_fit(tmp_path: Path) -> None:
    import sys

    import lightning.pytorch as pl

    from visiontasks.data.detection import write_synthetic_detection

    sys.path.insert(0, str(Path(__file__).parent))
    from detection_ddp_script import make

    root = write_synthetic_detection(tmp_path / "data", "coco", splits={"train": 4, "val": 2}, image_size=48,
                                     num_classes=2, background_fraction=0.0, masks=True)
    task, dm = make("mask_rcnn", str(root))
    trainer = pl.Trainer(accelerator="cpu", devices=1, precision="bf16-mixed", max_epochs=1, limit_train_batches=2,
                         limit_val_batches=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(task, dm)
    m = trainer.callback_metrics
    assert torch.isfinite(m["train/loss"]) and "val/mask_mAP50" in m and "val/mAP50" in m
    assert any(k.startswith("val/mask_AP/") for k in m)
