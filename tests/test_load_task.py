"""``predictor.load_task`` (Lightning's ``load_from_checkpoint``): weights named in the
hyper-parameters are not fetched again, class names and preprocessing come back."""

from __future__ import annotations

from pathlib import Path

import lightning
import pytest
import torch

from visiontasks.predictor import load_task
from visiontasks.preprocessing import Preprocessing
from visiontasks.tasks import ClassificationTask


@pytest.mark.parametrize("weights", ["/no/such/weights.pth", "IMAGENET1K_V1"])
def test_named_backbone_weights_are_not_fetched_and_the_data_settings_come_back(
        tmp_path: Path, weights: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_download(*args, **kwargs):
        raise AssertionError("load_task fetched weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    task = ClassificationTask("lenet5", 3, in_chans=1)
    hp = dict(task.hparams, backbone_weights=weights)  # as if trained from those weights
    prep = Preprocessing("stretch", (28, 28), (0.5,), (0.25,), 1)
    ckpt = {"state_dict": task.state_dict(), "pytorch-lightning_version": lightning.__version__,
            "hyper_parameters": hp, "task_class": "visiontasks.tasks.classification.ClassificationTask",
            "class_names": ["a", "b", "c"], "preprocessing": prep.to_dict()}
    path = tmp_path / "model.ckpt"
    torch.save(ckpt, path)
    loaded = load_task(path)
    assert type(loaded) is ClassificationTask and not loaded.training
    assert loaded.class_names == ["a", "b", "c"] and loaded.preprocessing == prep
    for key, value in task.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
