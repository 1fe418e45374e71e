"""Streaming (issue 20, part 3): ``visiontasks optimize-data`` writes litdata chunks of a config's
data, ``data.init_args.streaming`` trains from them. A local folder stands in for the object store.

- the streamed samples equal the file-based ones (same tensors after the deterministic eval
  transform; the training stream holds every training item once an epoch);
- a fit of a few steps from the chunks, through the real CLI entry point, for each family;
- a fit interrupted mid-epoch and resumed from last.ckpt sees the batches the uninterrupted fit saw.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

pytest.importorskip("litdata")

from visiontasks.cli import main as cli_main  # noqa: E402
from visiontasks.data.classification import ClassificationDataModule  # noqa: E402
from visiontasks.data.detection import DetectionDataModule  # noqa: E402
from visiontasks.data.segmentation import SegmentationDataModule  # noqa: E402
from visiontasks.errors import InvalidInputError, MissingFileError  # noqa: E402
from visiontasks.outputs import BestAndLastCheckpoint  # noqa: E402

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from conftest import write_image_folder  # noqa: E402

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.num_sanity_val_steps", "0", "--trainer.logger", "false"]


def _config(tmp: Path, source: str, name: str, model: dict[str, Any] | None = None, **data: Any) -> Path:
    """A copy of ``configs/<source>`` with ``data`` set into its data section (and ``model``
    into the model's init_args), without a time limit."""
    cfg = yaml.safe_load((ROOT / "configs" / source).read_text())
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(cfg["data"]["init_args"].get(key), dict):
            cfg["data"]["init_args"][key].update(value)
        else:
            cfg["data"]["init_args"][key] = value
    cfg["model"]["init_args"].update(model or {})
    cfg["trainer"].pop("max_time", None)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _optimize(config: Path, out: Path) -> None:
    assert cli_main(["optimize-data", "--config", str(config), "--output", str(out), "--workers", "2"]) == 0
    assert (out / "train" / "index.json").is_file() and (out / "val" / "index.json").is_file()


# -- the samples ------------------------------------------------------------------------------------
def _same(a: Any, b: Any, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), (where, set(a) ^ set(b))
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def _ids(batch: Any) -> list[str]:
    """The file of each item of a batch of any family."""
    if isinstance(batch, dict):
        return list(batch["id"])
    return [t["path"] for t in batch[1]]


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[type, dict[str, Any]]]:
    """A tiny generated set of each family, as datamodule kwargs. Detection's 64 px files are shrunk
    to 48 px in the chunks (what ``cache`` stores); its file-based side is ``cache: ram``."""
    tmp = tmp_path_factory.mktemp("sets")
    folder = write_image_folder(tmp / "folder", 20, (40, 48), (3, 3))
    from visiontasks.data.detection import write_synthetic_detection

    coco = write_synthetic_detection(tmp / "coco", "coco", splits={"train": 10, "val": 6}, image_size=64,
                                     num_classes=2, max_objects=2, seed=1, masks=True)
    return {
        "classification": (ClassificationDataModule, dict(
            source="imagefolder", root=str(folder), image_size=32, batch_size=4, num_workers=0, augment="standard",
            val_fraction=0.25, test_fraction=0.2)),
        "detection": (DetectionDataModule, dict(
            format="coco", root=str(coco), image_size=48, batch_size=4, num_workers=0, masks=True)),
        "segmentation": (SegmentationDataModule, dict(
            root=str(tmp / "seg"), format="synthetic", synthetic={"counts": [8, 4, 4], "image_size": 48}, crop_size=32,
            batch_size=2, num_workers=0)),
    }


@pytest.mark.parametrize("family", ["classification", "detection", "segmentation"])
def test_streamed_samples_equal_the_file_based_ones(family: str, sets: dict, tmp_path: Path) -> None:
    cls, kwargs = sets[family]
    files = cls(**kwargs, cache="ram" if family == "detection" else "none")
    out = tmp_path / "chunks"
    assert files.write_streams(str(out), num_workers=2) == ["train", "val", "test"][: 3 if family != "detection" else 2]
    streamed = cls(**kwargs, streaming=str(out))
    assert streamed.class_names == files.class_names
    if family == "detection":
        assert streamed.category_ids == files.category_ids
    n = 0
    for k, (a, b) in enumerate(zip(streamed.loader("val"), files.loader("val"), strict=True)):
        _same(a, b, f"{family} val batch {k}")
        n += len(_ids(a))
    assert n > 0
    # training: shuffled, every training item once an epoch (the files' training split)
    train_files = sorted(i for batch in files.loader("train") for i in _ids(batch))
    first = [i for batch in streamed.loader("train") for i in _ids(batch)]
    assert sorted(first) == sorted(set(train_files)) and len(first) == len(set(first))


def test_chunks_of_other_settings_and_missing_chunks_are_refused(sets: dict, tmp_path: Path) -> None:
    cls, kwargs = sets["detection"]
    cls(**kwargs).write_streams(str(tmp_path / "chunks"))
    with pytest.raises(InvalidInputError, match="image_size=48.*64"):
        cls(**{**kwargs, "image_size": 64}, streaming=str(tmp_path / "chunks")).loader("val")
    with pytest.raises(MissingFileError, match="optimize-data"):
        cls(**kwargs, streaming=str(tmp_path / "nothing")).class_names  # noqa: B018


# -- fit through the CLI ----------------------------------------------------------------------------
def _family_config(family: str, tmp: Path) -> Path:
    if family == "classification":
        return _config(tmp, "classification/lenet5_digits.yaml", "lenet", val_fraction=0.5, test_fraction=0.4,
                       batch_size=16, num_workers=0)
    if family == "detection":
        return _config(tmp, "detection/yolov1_resnet18_shapes.yaml", "yolo", root=str(tmp / "data"), image_size=64,
                       batch_size=2, eval_batch_size=2, num_workers=0,
                       synthetic={"splits": {"train": 6, "val": 2}, "image_size": 64})
    return _config(tmp, "segmentation/fcn32s_resnet18_shapes.yaml", "fcn", root=str(tmp / "data"),
                   synthetic={"counts": [6, 2, 2], "image_size": 64}, crop_size=48, batch_size=2, num_workers=0)


@pytest.mark.parametrize("family", ["classification", pytest.param("detection", marks=pytest.mark.slow),
                                    pytest.param("segmentation", marks=pytest.mark.slow)])
def test_fit_from_chunks_through_the_cli(family: str, tmp_path: Path) -> None:
    config = _family_config(family, tmp_path)
    _optimize(config, tmp_path / "chunks")
    run = tmp_path / "runs"
    assert cli_main(["fit", "--config", str(config), "--data.init_args.streaming", str(tmp_path / "chunks"),
                     "--trainer.default_root_dir", str(run), "--trainer.max_steps", "2",
                     "--trainer.limit_val_batches", "1", *QUIET]) == 0
    (last,) = run.rglob("last.ckpt")
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2
    # the StreamingDataLoader's position travels in last.ckpt (Lightning's fit loop stores it)
    (state,) = ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert state["num_samples_yielded"] > 0


# -- resume mid-epoch -------------------------------------------------------------------------------
def _fit_recording(config: Path, chunks: Path, root: Path, monkeypatch, stop_at: int | None = None,
                   resume: bool = False) -> list[list[str]]:
    """The ids of every training batch of a 2-epoch fit from ``chunks`` (Ctrl-C after ``stop_at`` steps)."""
    seen: list[list[str]] = []
    batch_end = BestAndLastCheckpoint.on_train_batch_end

    def record(self, trainer, module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        seen.append(list(batch["id"]))
        batch_end(self, trainer, module, outputs, batch, batch_idx)
        if stop_at is not None and trainer.global_step == stop_at:
            raise KeyboardInterrupt  # Lightning writes last.ckpt on Ctrl-C (BestAndLastCheckpoint.on_exception)

    monkeypatch.setattr(BestAndLastCheckpoint, "on_train_batch_end", record)
    args = ["fit", "--config", str(config), "--data.init_args.streaming", str(chunks), "--trainer.default_root_dir",
            str(root), "--trainer.max_epochs", "2", "--trainer.limit_val_batches", "1", *QUIET,
            *(["--ckpt_path", "last"] if resume else [])]
    sigint = signal.getsignal(signal.SIGINT)  # Lightning ignores further Ctrl-C while it shuts down
    try:
        if stop_at is None:
            assert cli_main(args) == 0
        else:
            with pytest.raises(SystemExit):
                cli_main(args)
    finally:
        signal.signal(signal.SIGINT, sigint)
        monkeypatch.setattr(BestAndLastCheckpoint, "on_train_batch_end", batch_end)
    return seen


def test_a_fit_resumed_mid_epoch_continues_the_stream(tmp_path: Path, monkeypatch) -> None:
    """Interrupted after 3 of an epoch's batches and resumed from last.ckpt, the fit sees the batches
    the uninterrupted fit saw, in its order, through the epoch boundary."""
    config = _family_config("classification", tmp_path)
    chunks = tmp_path / "chunks"
    _optimize(config, chunks)
    whole = _fit_recording(config, chunks, tmp_path / "whole", monkeypatch)
    per_epoch = len(whole) // 2
    assert per_epoch > 4 and whole[:per_epoch] != whole[per_epoch:]  # reshuffled each epoch
    root = tmp_path / "interrupted"
    before = _fit_recording(config, chunks, root, monkeypatch, stop_at=3)
    assert before == whole[:3]
    after = _fit_recording(config, chunks, root, monkeypatch, resume=True)
    assert before + after == whole
