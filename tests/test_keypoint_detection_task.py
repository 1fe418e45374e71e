"""KeypointDetectionTask on a tiny in-test data set (hand-made targets with keypoints, images on
disk): fit a few steps, validate (box and keypoint AP logged, finite), predict through the task's
writers (COCO results with keypoints, PNGs with the skeleton) and through ``load_model`` after a
checkpoint round trip (keypoints in file pixels); and the task's refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image

from visiontasks.data.detection.dataset import detection_collate, prediction_dataset
from visiontasks.errors import InvalidInputError
from visiontasks.preprocessing import Preprocessing
from visiontasks.tasks import KeypointDetectionTask

TINY = dict(fpn=False, feature_stride=8, anchor_sizes=[16, 32], representation_size=32, keypoint_layers=[16, 16],
            rpn_pre_nms_top_n_train=100, rpn_post_nms_top_n_train=30, rpn_pre_nms_top_n_test=50,
            rpn_post_nms_top_n_test=20, rpn_batch_size_per_image=32, box_batch_size_per_image=16,
            score_thresh=0.0, detections_per_img=5)
SKELETON = [(0, 1), (1, 2), (2, 3), (3, 0)]


def _square_images(folder: Path, n: int) -> tuple[list[Path], list[dict[str, torch.Tensor]]]:
    """``n`` 48 x 64 (H x W) PNGs, each with one bright rectangle; its 4 corners are the keypoints
    (the last labelled not visible, v = 1)."""
    folder.mkdir(parents=True, exist_ok=True)
    files, targets = [], []
    for i in range(n):
        x0, y0 = 6 + 3 * i, 8 + 2 * i
        x1, y1 = x0 + 28, y0 + 22
        image = np.full((48, 64, 3), 30, np.uint8)
        image[y0:y1, x0:x1] = (230, 200, 40)
        files.append(folder / f"im{i}.png")
        Image.fromarray(image).save(files[-1])
        kp = torch.tensor([[[x0, y0, 2], [x1, y0, 2], [x1, y1, 2], [x0, y1, 1]]], dtype=torch.float32)
        targets.append({"boxes": torch.tensor([[x0, y0, x1, y1]], dtype=torch.float32),
                        "labels": torch.zeros(1, dtype=torch.long), "keypoints": kp})
    return files, targets


class SquaresData(pl.LightningDataModule):
    """The data side's interface for keypoints, by hand: ``class_names``, ``num_keypoints``,
    ``keypoint_names``, ``skeleton``, ``keypoint_sigmas``, ``preprocessing()``; batches of the
    detection layout (the images through the evaluation pipeline of ``preprocessing()``, here the
    files' own size, so the hand-made targets are in the transformed pixels too)."""

    class_names = ["square"]
    num_keypoints = 4
    keypoint_names = ["tl", "tr", "br", "bl"]
    skeleton = SKELETON
    keypoint_sigmas = [0.1] * 4

    def __init__(self, folder: Path, n: int = 4) -> None:
        super().__init__()
        self.files, self.targets = _square_images(folder, n)

    def preprocessing(self) -> Preprocessing:
        return Preprocessing("none")

    def _items(self, with_targets: bool = True) -> list:
        items = []
        for (image, target), extra in zip(prediction_dataset(self.files, self.preprocessing()), self.targets):
            items.append((image, {**target, **extra} if with_targets else target))
        return items

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self._items(), batch_size=2, shuffle=False, collate_fn=detection_collate)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(self._items(), batch_size=2, collate_fn=detection_collate)

    def predict_dataloader(self):
        return torch.utils.data.DataLoader(self._items(False), batch_size=2, collate_fn=detection_collate)


def test_fit_validate_predict_and_reload(tmp_path: Path) -> None:
    from visiontasks import load_model
    from visiontasks.outputs import default_callbacks

    torch.manual_seed(0)
    data = SquaresData(tmp_path / "images")
    task = KeypointDetectionTask(backbone="resnet18", num_classes=1, num_keypoints=4, frozen_stages=5,
                                 model_kwargs=TINY)
    trainer = pl.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, limit_val_batches=2,
                         num_sanity_val_steps=0, default_root_dir=str(tmp_path))
    trainer.fit(task, datamodule=data)
    logged = task.stage_logged["val"]
    for key in ("val/mAP", "val/mAP50", "val/kp_mAP", "val/kp_mAP50", "val/kp_mAP75", "val/kp_mAR"):
        assert key in logged and math.isfinite(logged[key]) and -1 <= logged[key] <= 1, (key, logged)
    assert task.skeleton == SKELETON and task.keypoint_sigmas == [0.1] * 4
    assert all(m["keypoints"].sigmas == [0.1] * 4 for m in task.metrics.values())

    out = tmp_path / "predictions"
    callbacks = default_callbacks(task)
    for c in callbacks:
        if hasattr(c, "output_dir"):
            c.output_dir = out
    pred_trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=callbacks,
                              default_root_dir=str(tmp_path))
    predictions = [p for b in pred_trainer.predict(task, datamodule=data) for p in b]
    assert len(predictions) == 4
    for p in predictions:
        kp = p["keypoints"]
        assert kp.shape == (len(p["scores"]), 4, 3) and len(p["scores"]) > 0
        assert (kp[..., 0] >= 0).all() and (kp[..., 0] <= 64).all() and (kp[..., 1] <= 48).all()
        assert p["skeleton"] == [list(e) for e in SKELETON]
    results = json.loads((out / "results.json").read_text())
    assert results and all(len(r["keypoints"]) == 12 for r in results)
    first = next(r for r in results if r["image_id"] == predictions[0]["image_id"])
    np.testing.assert_allclose(first["keypoints"][:2], predictions[0]["keypoints"][0, 0, :2].tolist(), atol=0.01)
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 4 and all(Image.open(p).size == (64, 48) for p in pngs)

    ckpt = tmp_path / "kp.ckpt"
    trainer.save_checkpoint(ckpt)
    model = load_model(ckpt, device="cpu")
    assert model.task.skeleton == SKELETON and model.task.keypoint_names == ["tl", "tr", "br", "bl"]
    got = model.predict([data.files[0]])[0]
    assert got.keypoints is not None and got.keypoints.shape == (len(got.scores), 4, 3)
    torch.testing.assert_close(got.keypoints, predictions[0]["keypoints"])
    assert got.plot().shape == (48, 64, 3)
    assert got.skeleton == SKELETON


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="model 'faster_rcnn' returns no keypoints"):
        KeypointDetectionTask(model="faster_rcnn", num_classes=1, num_keypoints=4)
    with pytest.raises(InvalidInputError, match="model.num_keypoints=4 but model_kwargs.num_keypoints=17"):
        KeypointDetectionTask(num_classes=1, num_keypoints=4, model_kwargs={**TINY, "num_keypoints": 17})
    data = SquaresData(tmp_path / "images", n=2)
    task = KeypointDetectionTask(num_classes=1, num_keypoints=5, model_kwargs=TINY)
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)
    with pytest.raises(InvalidInputError, match="model.num_keypoints=5 but data.num_keypoints=4"):
        trainer.fit(task, datamodule=data)
    data.num_keypoints = 0
    with pytest.raises(InvalidInputError, match="data.num_keypoints=0; read the data with keypoints: true"):
        trainer.fit(task, datamodule=data)
    task = KeypointDetectionTask(num_classes=1, num_keypoints=4, model_kwargs=TINY).eval()
    target = {"boxes": torch.tensor([[2.0, 2.0, 20.0, 20.0]]), "labels": torch.tensor([0])}
    with torch.no_grad(), pytest.raises(InvalidInputError, match=r"data\.init_args\.keypoints: true"):
        task.validation_step(([torch.zeros(3, 32, 32)], [target]), 0)
