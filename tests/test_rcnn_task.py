"""R-CNN and Fast R-CNN through the real data, task and CLI: proposals cached by the datamodule,
background-only images, a dataset without any proposal, bf16-mixed, 2-process DDP, the configs and
the ``visiontasks proposals`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml

from visiontasks.data import DetectionDataModule
from visiontasks.tasks import DetectionTask

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "detection"
TINY_MODEL = {
    "rcnn": dict(warp_size=32, context_padding=2, representation_size=32, regions_per_batch=16, max_proposals_test=30),
    "fast_rcnn": dict(representation_size=32, rois_per_image=16, max_proposals_test=30),
}


def tiny_data(root: Path, **proposals) -> dict:
    return dict(
        format="coco", root=str(root),
        synthetic={"splits": {"train": 6, "val": 4}, "image_size": 64, "num_classes": 3,
                   "background_fraction": 0.3, "seed": 5},
        image_size=64, batch_size=3, augment=False,
        proposals={"mode": "single", "max_boxes": 30, "processes": 1, "progress": False, **proposals},
    )


def fit_and_validate(tmp_path: Path, model: str, precision: str = "32-true", **proposals) -> dict:
    torch.manual_seed(0)
    dm = DetectionDataModule(**tiny_data(tmp_path / "data", **proposals))
    task = DetectionTask(model=model, backbone="resnet18", num_classes=3, model_kwargs=TINY_MODEL[model])
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, precision=precision, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path)
    trainer.fit(task, datamodule=dm)
    assert any(len(r.labels) == 0 for r in dm.splits["train"].records), "want a background-only image"
    losses = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/loss")}
    assert losses, trainer.callback_metrics
    metrics = trainer.validate(task, datamodule=dm, verbose=False)[0]
    return {"metrics": metrics, "dm": dm, "loss": sum(losses.values())}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["rcnn", "fast_rcnn"])
def test_bf16_mixed_fit_with_cached_proposals_and_background_images(tmp_path, model):
    out = fit_and_validate(tmp_path, model, precision="bf16-mixed")
    assert 0.0 <= out["metrics"]["val/mAP50"] <= 1.0 and out["loss"] == out["loss"]  # finite
    # the datamodule cached the proposals on disk, one file per split
    files = sorted(p.name.split("-")[0] for p in (tmp_path / "data" / "proposals").glob("*.npz"))
    assert files == ["train", "val"]
    batch = next(iter(out["dm"].train_dataloader()))
    assert all(t["proposals"].dtype == torch.float32 and t["proposals"].shape[1] == 4 for t in batch[1])


@pytest.mark.slow
@pytest.mark.parametrize("model", ["rcnn", "fast_rcnn"])
def test_dataset_without_any_proposal(tmp_path, model):
    out = fit_and_validate(tmp_path, model, max_boxes=0)
    assert all(len(t["proposals"]) == 0 for t in next(iter(out["dm"].val_dataloader()))[1])
    assert out["metrics"]["val/mAP"] == 0.0 and out["loss"] == out["loss"]


def test_task_refuses_a_batch_without_proposals():
    task = DetectionTask(model="fast_rcnn", backbone="resnet18", num_classes=3, model_kwargs=TINY_MODEL["fast_rcnn"])
    task.eval()
    batch = ([torch.zeros(3, 32, 32)], [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}])
    with pytest.raises(ValueError, match="proposals"):
        task.validation_step(batch, 0)


def _tiny_config(tmp_path: Path, name: str) -> Path:
    cfg = yaml.safe_load((CONFIGS / name).read_text())
    cfg["model"]["init_args"]["model_kwargs"].update(TINY_MODEL[cfg["model"]["init_args"]["model"]])
    cfg["data"]["init_args"].update(tiny_data(tmp_path / "data"))
    cfg["trainer"].update(max_epochs=1, limit_train_batches=1, limit_val_batches=1)
    cfg["trainer"].pop("max_time", None)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rcnn_resnet18_shapes.yaml", "fast_rcnn_resnet18_shapes.yaml"])
def test_cli_fit_smoke_on_the_shipped_config(tmp_path, name):
    from visiontasks.cli import main

    cfg = _tiny_config(tmp_path, name)
    main(["fit", "--config", str(cfg), "--trainer.default_root_dir", str(tmp_path / "runs")])
    assert list((tmp_path / "runs").rglob("last.ckpt"))


def test_configs_parse_and_build():
    for name in ("rcnn_resnet18_shapes.yaml", "fast_rcnn_resnet18_shapes.yaml"):
        cfg = yaml.safe_load((CONFIGS / name).read_text())
        args = cfg["model"]["init_args"]
        num_classes = DetectionDataModule(**cfg["data"]["init_args"]).num_classes  # the CLI links it
        task = DetectionTask(model=args["model"], backbone=args["backbone"], num_classes=num_classes,
                             model_kwargs=args["model_kwargs"])
        assert task.detector.needs_proposals
        assert cfg["data"]["init_args"]["proposals"]["mode"] == "fast"


def test_proposals_command_fills_the_cache_and_reports_recall(tmp_path, capsys):
    from visiontasks.commands.proposals import main

    cfg = _tiny_config(tmp_path, "fast_rcnn_resnet18_shapes.yaml")
    assert main(["--config", str(cfg), "--json", str(tmp_path / "r.json"), "--top-k", "5"]) == 0
    table = capsys.readouterr().out
    assert "recall@0.5" in table and "| train | 6 |" in table
    rows = {r["split"]: r for r in json.loads((tmp_path / "r.json").read_text())}
    assert set(rows) == {"train", "val"}
    for r in rows.values():
        assert 0.0 <= r["recall@0.7"] <= r["recall@0.5"] <= 1.0 and r["mean_proposals"] <= 30
        assert r["top5"]["recall@0.5"] <= r["recall@0.5"]
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "data" / "proposals").glob("*.npz")}
    assert len(files) == 2
    assert main(["--config", str(cfg), "--no-recall"]) == 0  # reused: files untouched
    assert {p: p.stat().st_mtime_ns for p in files} == files
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"data": {"class_path": "visiontasks.data.DetectionDataModule",
                                            "init_args": {"root": str(tmp_path / "x")}}}))
    assert main(["--config", str(bad)]) == 2
    assert "no proposals section" in capsys.readouterr().err
    # the config is validated by jsonargparse: a typo in data's init_args is named, nothing is built
    typo = yaml.safe_load(cfg.read_text())
    typo["data"]["init_args"]["batchsize"] = 2
    bad.write_text(yaml.safe_dump(typo))
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(bad)])
    assert exit_info.value.code == 2 and "batchsize" in capsys.readouterr().err


DDP_SCRIPT = r'''
import json, sys
import lightning.pytorch as pl
import torch
sys.path.insert(0, {tests!r})
from test_rcnn_task import TINY_MODEL, tiny_data
from visiontasks.data import DetectionDataModule
from visiontasks.tasks import DetectionTask
from pathlib import Path

model, tmp, out = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
pl.seed_everything(0)
dm = DetectionDataModule(**tiny_data(tmp / "data"))
task = DetectionTask(model=model, backbone="resnet18", num_classes=3, model_kwargs=TINY_MODEL[model])
trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     default_root_dir=tmp)
trainer.fit(task, datamodule=dm)
metrics = trainer.validate(task, datamodule=dm, verbose=False)[0]
if trainer.is_global_zero:
    torch.save(task.state_dict(), tmp / "ddp.pt")
    json.dump({{"world_size": trainer.world_size, "metrics": metrics}}, open(out, "w"))
'''


@pytest.mark.slow
@pytest.mark.parametrize("model", ["rcnn", "fast_rcnn"])
def test_ddp_two_processes_fit_and_map_equals_single_process(tmp_path, model, port):
    script = tmp_path / "ddp_fit.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "ddp.json"
    proc = subprocess.run([sys.executable, str(script), model, str(tmp_path), str(out)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["world_size"] == 2
    # the same weights validated in one process give the same mAP (val has 4 images: no padding)
    dm = DetectionDataModule(**tiny_data(tmp_path / "data"))
    task = DetectionTask(model=model, backbone="resnet18", num_classes=3, model_kwargs=TINY_MODEL[model])
    task.load_state_dict(torch.load(tmp_path / "ddp.pt"))
    single = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    metrics = single.validate(task, datamodule=dm, verbose=False)[0]
    assert metrics["val/mAP"] == pytest.approx(result["metrics"]["val/mAP"], abs=1e-6)
    assert metrics["val/mAP50"] == pytest.approx(result["metrics"]["val/mAP50"], abs=1e-6)


@pytest.mark.slow
def test_generations_benchmark_writes_table_chart_and_json(tmp_path):
    from visiontasks.commands.benchmark import main

    bench = {
        "output": str(tmp_path / "out"),
        "data": {"class_path": "visiontasks.data.DetectionDataModule", "init_args": tiny_data(tmp_path / "data")},
        "train": {"max_epochs": 1, "limit_train_batches": 1, "limit_val_batches": 1, "max_time": None},
        "detectors": {
            name: {"config": str(CONFIGS / f"{name}_resnet18_shapes.yaml"),
                   "model_overrides": {"model_kwargs": TINY_MODEL[name]},
                   "checkpoint": str(tmp_path / "missing.ckpt")}
            for name in ("rcnn", "fast_rcnn")
        },
        "timing": {"threads": 1, "train_batches": 1, "infer_images": 2},
    }
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(yaml.safe_dump(bench))
    assert main(["detectors", "--config", str(cfg)]) == 0
    out = tmp_path / "out"
    rows = {r["model"]: r for r in json.loads((out / "generations.json").read_text())}
    assert set(rows) == {"rcnn", "fast_rcnn"}
    for r in rows.values():
        assert r["trained_here"] and Path(r["checkpoint"]).is_file()
        assert r["params"] > 1e6 and r["train_s_per_epoch"] > 0 and r["network_ms"] > 0
        assert r["proposal_ms"] > 0  # selective search timed apart from the network
        assert 0 <= r["mAP50"] <= 1
    table = (out / "generations.md").read_text()
    assert "R-CNN (2014)" in table and "Fast R-CNN (2015)" in table and "mAP50" in table
    assert (out / "generations.png").stat().st_size > 1000
    # a second run loads the checkpoints instead of training
    for name in ("rcnn", "fast_rcnn"):
        bench["detectors"][name]["checkpoint"] = rows[name]["checkpoint"]
    cfg.write_text(yaml.safe_dump(bench))
    assert main(["detectors", "--config", str(cfg), "--only", "fast_rcnn"]) == 0
    rows2 = {r["model"]: r for r in json.loads((out / "generations.json").read_text())}
    assert not rows2["fast_rcnn"]["trained_here"] and rows2["fast_rcnn"]["mAP50"] == pytest.approx(rows["fast_rcnn"]["mAP50"])
    assert main(["nonsense"]) == 2


@pytest.mark.parametrize("change, key", [
    ({"outptu": "x"}, "outptu"),                                               # unknown key
    ({"timing": {"threads": "one"}}, "timing.threads"),                        # wrong type
    ({"detectors": {"rcnn": {"checkpoint": "x.ckpt"}}}, "required: config"),   # entry without config
    ({"data": {"class_path": "visiontasks.data.DetectionDataModule", "init_args": {"batchsize": 3}}},
     "batchsize"),                                                             # data init_args
    ({"model_overrides": {"num_clases": 4}}, "num_clases"),                    # into the fit config
    ({"train": {"max_epoch": 1}}, "max_epoch"),                                # Trainer options
])
def test_generations_benchmark_rejects_bad_config(tmp_path, capsys, change, key):
    """A bad benchmark file stops with jsonargparse's error naming the key, before anything runs."""
    from visiontasks.commands.benchmark import main

    bench = {
        "output": str(tmp_path / "out"),
        "data": {"class_path": "visiontasks.data.DetectionDataModule", "init_args": tiny_data(tmp_path / "data")},
        "detectors": {"rcnn": {"config": str(CONFIGS / "rcnn_resnet18_shapes.yaml")}},
    }
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(yaml.safe_dump({**bench, **change}))
    with pytest.raises(SystemExit) as exit_info:
        main(["detectors", "--config", str(cfg)])
    assert exit_info.value.code == 2
    assert key in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "data").exists()


def test_benchmark_times_training_steps_with_a_callback(tmp_path):
    """The benchmark's training time comes from a StepTimer on a Trainer.fit of a copy of the task:
    the timed steps (after one warm-up) times the batches of an epoch; the task itself is untouched."""
    from visiontasks.commands.benchmark import _train_time_per_epoch

    torch.manual_seed(0)
    dm = DetectionDataModule(**tiny_data(tmp_path / "data"))
    dm.prepare_data()
    dm.setup("fit")
    task = DetectionTask(model="fast_rcnn", backbone="resnet18", num_classes=3, model_kwargs=TINY_MODEL["fast_rcnn"])
    before = {k: v.clone() for k, v in task.state_dict().items()}
    seconds, batches = _train_time_per_epoch(task, dm, 2)
    assert batches == len(dm.train_dataloader()) == 2 and seconds > 0
    assert all(torch.equal(v, task.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("generations_*.yaml")), ids=lambda p: p.stem)
def test_shipped_generations_configs_validate_with_their_fit_configs(path: Path, monkeypatch) -> None:
    """Every shipped benchmark config, each entry's fit config with its model overrides, validates
    and builds its model (``model_kwargs`` is free-form: a misspelt key fails only when built; no data
    is read: the class count is given)."""
    from visiontasks.commands.benchmark import _fit_configs, benchmark_parser, fit_config_parser

    monkeypatch.chdir(CONFIGS.parents[1])  # the configs name their fit configs from the checkout's root
    parser = benchmark_parser()
    bench = parser.instantiate(parser.parse_args(["--config", str(path)]))
    fit_parser = fit_config_parser()
    fit_cfgs = _fit_configs(parser, fit_parser, bench, list(bench.detectors), num_classes=3)
    assert set(fit_cfgs) == set(bench.detectors)
    for fit_cfg, _ in fit_cfgs.values():
        assert sum(p.numel() for p in fit_parser.instantiate(fit_cfg).model.parameters()) > 0
