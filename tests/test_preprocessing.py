"""Checkpoints carry the data's evaluation preprocessing and class names (what inference needs)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from visiontasks.data import ClassificationDataModule, DetectionDataModule, SegmentationDataModule
from visiontasks.preprocessing import Preprocessing
from visiontasks.tasks import ClassificationTask


def test_round_trip_and_validation() -> None:
    prep = Preprocessing("letterbox", (320, 416), (0.5, 0.4, 0.3), (0.2, 0.2, 0.2), 3)
    assert Preprocessing.from_dict(prep.to_dict()) == prep
    with pytest.raises(ValueError, match="needs an image_size"):
        Preprocessing("stretch", None)
    with pytest.raises(ValueError, match="resize must be"):
        Preprocessing("crop", (1, 1))
    with pytest.raises(ValueError, match="1 values"):
        Preprocessing("none", None, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 1)


def test_each_datamodule_states_its_eval_preprocessing(tmp_path: Path) -> None:
    cls = ClassificationDataModule(source="digits", root=str(tmp_path / "d"), image_size=[28, 30], in_chans=1)
    assert cls.preprocessing() == Preprocessing("stretch", (28, 30), (0.5,), (0.5,), 1)
    det = DetectionDataModule(format="coco", root=str(tmp_path / "x"), image_size=320, resize="letterbox",
                              synthetic={"num_classes": 2})
    assert det.preprocessing().resize == "letterbox" and det.preprocessing().image_size == (320, 320)
    det_none = DetectionDataModule(format="coco", root=str(tmp_path / "x"), resize="none", synthetic={"num_classes": 2})
    assert det_none.preprocessing().image_size is None
    seg = SegmentationDataModule(format="synthetic", root=str(tmp_path / "s"), mean=[0.1, 0.2, 0.3])
    assert seg.preprocessing().resize == "none" and seg.preprocessing().mean == (0.1, 0.2, 0.3)


def test_fit_saves_preprocessing_and_class_names_in_the_checkpoint(tmp_path: Path) -> None:
    import lightning.pytorch as pl

    data = ClassificationDataModule(source="digits", root=str(tmp_path / "d"), image_size=16, in_chans=1, batch_size=32)
    task = ClassificationTask(num_classes=10, backbone="lenet5", in_chans=1)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=str(tmp_path), limit_val_batches=1)
    trainer.fit(task, datamodule=data)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    raw = torch.load(path, map_location="cpu", weights_only=True)  # plain types only
    assert raw["preprocessing"] == data.preprocessing().to_dict()
    assert raw["class_names"] == [str(i) for i in range(10)]
    loaded = ClassificationTask.load_from_checkpoint(path)
    assert loaded.preprocessing == data.preprocessing() and loaded.class_names == raw["class_names"]
