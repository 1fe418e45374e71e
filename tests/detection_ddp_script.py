"""Run by tests/test_detection_train.py as a subprocess: a 2-process CPU DDP fit, then validate.

``python detection_ddp_script.py MODEL DATA_ROOT OUT_DIR``: fits ``MODEL`` (faster_rcnn | yolov1 | ssd |
mask_rcnn, the last as instance segmentation on data with masks) for a
few steps with ``strategy="ddp"`` on 2 CPU processes, validates, and (rank 0) writes the validation
metrics to ``OUT_DIR/metrics.json`` and the weights to ``OUT_DIR/weights.pt``. The test then validates
the same weights in one process and compares the mAP. (A DDP Trainer inside pytest would re-run the
pytest command in its child process; a script is what Lightning's launcher expects.)
"""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import torch

from visiontasks.data.detection import DetectionDataModule
from visiontasks.tasks.detection import DetectionTask
from visiontasks.tasks.instance_segmentation import InstanceSegmentationTask

TINY = {
    "faster_rcnn": dict(anchor_sizes=[16, 32, 64], representation_size=64, rpn_pre_nms_top_n_train=200,
                        rpn_post_nms_top_n_train=50, rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=50,
                        rpn_batch_size_per_image=32, box_batch_size_per_image=16, roi_op="pool"),
    "yolov1": dict(feature="layer2", head="conv", grid_size=8, hidden_channels=32, dropout=0.0,
                   activation="sigmoid"),
    "ssd": dict(image_size=64, extra_channels=[64, 32], detections_per_img=50),
}
TINY["mask_rcnn"] = dict(TINY["faster_rcnn"], mask_layers=[16, 16], mask_predictor_channels=16)
# steps of the DDP fit: an untrained YOLO finds nothing (mAP 0 = a check that cannot fail), so it
# (and Mask R-CNN, whose untrained boxes match at IoU ~0.5 at best) trains until some of its detections
# match; Faster R-CNN's untrained proposals already do.
EPOCHS = {"faster_rcnn": 1, "yolov1": 12, "ssd": 2, "mask_rcnn": 10}


def make(model: str, root: str) -> tuple[DetectionTask, DetectionDataModule]:
    """The task and data used by both the DDP run and the single-process check."""
    masks = model == "mask_rcnn"  # instance segmentation: data with masks, box + mask AP
    dm = DetectionDataModule(format="coco", root=root, image_size=64, batch_size=2, eval_batch_size=2,
                             augment=False, masks=masks, num_workers=0)
    task_class = InstanceSegmentationTask if masks else DetectionTask
    task = task_class(model=model, backbone="resnet18", num_classes=2, model_kwargs=TINY[model],
                      optimizer=partial(torch.optim.AdamW, lr=2e-3))
    return task, dm


def main() -> None:
    model, root, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    torch.set_num_threads(1)
    pl.seed_everything(0, workers=True)
    task, dm = make(model, root)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=EPOCHS[model],
                         limit_train_batches=2, check_val_every_n_epoch=EPOCHS[model],
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(out))
    trainer.fit(task, dm)
    metrics = trainer.validate(task, dm, verbose=False)[0]
    if trainer.is_global_zero:
        torch.save(task.state_dict(), out / "weights.pt")
        (out / "metrics.json").write_text(json.dumps({
            "metrics": {k: float(v) for k, v in metrics.items()},
            "world_size": trainer.world_size,
            "val_images": len(dm.datasets["val"]),
        }))


if __name__ == "__main__":
    main()
