"""A person's mistakes reach them as one line and exit status 2; bugs keep their traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from visiontasks.cli import COMMAND_HELP, main
from visiontasks.errors import UnknownNameError, find_user_error, unknown_name, user_message

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "configs/classification/lenet5_digits.yaml")


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("fit", "validate", "test", "predict", "demo", "summary", "proposals", "benchmark"):
        assert f"  {name} " in out
    assert set(COMMAND_HELP) >= {"demo", "summary", "proposals", "benchmark"}


def test_did_you_mean() -> None:
    err = unknown_name("backbone", "resnet19", ["resnet18", "vgg16", "lenet5"])
    assert isinstance(err, UnknownNameError) and isinstance(err, ValueError)
    assert "did you mean 'resnet18'?" in str(err) and "available: lenet5, resnet18, vgg16" in str(err)
    assert "did you mean" not in str(unknown_name("backbone", "zzz", ["resnet18"]))


def test_worker_traceback_is_cut_to_the_message() -> None:
    from visiontasks.data.io import ImageReadError

    wrapped = ImageReadError("Caught ImageReadError in DataLoader worker process 0.\nOriginal Traceback (most "
                             "recent call last):\n  File \"x.py\", line 1\nvisiontasks.data.io.ImageReadError: "
                             "cannot read image a.png: truncated\n")
    assert user_message(wrapped) == "cannot read image a.png: truncated"


def test_error_wrapped_by_jsonargparse_is_found() -> None:
    try:
        try:
            raise unknown_name("backbone", "resnet19", ["resnet18"])
        except ValueError as inner:
            raise ValueError("Does not validate against any of the Union subtypes") from inner
    except ValueError as outer:
        assert isinstance(find_user_error(outer), UnknownNameError)
    assert find_user_error(RuntimeError("a bug")) is None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model.init_args.backbone", "resnet19"], "unknown backbone 'resnet19'; available: "),
        (["--ckpt_path", "last", "--run_name", "never_trained"], "--ckpt_path last: no run with checkpoints/last.ckpt"),
    ],
    ids=["unknown-backbone", "no-run-to-resume"],
)
def test_config_mistakes_print_one_line(args: list[str], expected: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["fit", "--config", DIGITS, "--trainer.default_root_dir", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1


def test_console_script_exit_status_and_debug_switch(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("VISIONTASKS_DEBUG", None)
    cmd = [sys.executable, "-m", "visiontasks.cli", "summary", "resnet19"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2 and "did you mean 'resnet18'" in proc.stderr and "Traceback" not in proc.stderr
    cmd = [sys.executable, "-m", "visiontasks.cli", "fit", "--config", DIGITS, "--model.init_args.backbone",
           "resnet19", "--trainer.default_root_dir", str(tmp_path)]
    proc = subprocess.run(cmd, env={**env, "VISIONTASKS_DEBUG": "1"}, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "UnknownNameError" in proc.stderr


def _tiny_classification_checkpoint(root: Path) -> Path:
    code = main(["fit", "--config", DIGITS, "--trainer.default_root_dir", str(root), "--trainer.max_epochs", "1",
                 "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2",
                 "--trainer.enable_progress_bar", "false"])
    assert code == 0
    return root / "lenet5_digits/version_0/checkpoints/last.ckpt"


def test_wrong_checkpoints_are_refused_before_anything_runs(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    ckpt = _tiny_classification_checkpoint(tmp_path / "runs")
    capsys.readouterr()
    not_ckpt = tmp_path / "notes.ckpt"
    not_ckpt.write_text("hello")
    plain = tmp_path / "weights.pth"
    torch.save({"conv.weight": torch.zeros(2)}, plain)
    detection = str(ROOT / "configs/detection/yolov1_resnet18_shapes.yaml")
    cases = [
        (["test", "--config", DIGITS, "--ckpt_path", str(not_ckpt)], f"{not_ckpt} is not a Lightning checkpoint"),
        (["test", "--config", DIGITS, "--ckpt_path", str(plain)], "is not a Lightning checkpoint (it holds a plain state_dict)"),
        (["test", "--config", DIGITS, "--ckpt_path", str(tmp_path / "missing.ckpt")], "missing.ckpt does not exist"),
        (["test", "--config", detection, "--ckpt_path", str(ckpt)],
         "was written by ClassificationTask, but the config's model is DetectionTask"),
    ]
    for args, expected in cases:
        code = main([*args, "--trainer.default_root_dir", str(tmp_path / "runs")])
        err = capsys.readouterr().err
        assert code == 2, args
        assert expected in err and "Traceback" not in err, err
    # the right checkpoint still works
    code = main(["validate", "--config", DIGITS, "--ckpt_path", str(ckpt), "--trainer.limit_val_batches", "2",
                 "--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.enable_progress_bar", "false"])
    assert code == 0


# -- "did you mean" for a misspelt key: one line, exit status 2, the closest keys at that level ------
def _misspelt_config(tmp_path: Path, section: str, good: str, bad: str) -> tuple[Path, int]:
    """The digits config with ``good:`` under ``section`` renamed ``bad:``; (file, 1-based line)."""
    lines = Path(DIGITS).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{section}:"))
    row = next(i for i in range(start, len(lines)) if lines[i].lstrip().startswith(f"{good}:"))
    lines[row] = lines[row].replace(f"{good}:", f"{bad}:", 1)
    path = tmp_path / "misspelt.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path, row + 1


def _fit_error(args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    code = main(["fit", *args, "--trainer.fast_dev_run", "1", "--trainer.default_root_dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    assert not (tmp_path / "runs").exists()  # refused before anything ran
    return lines[0]


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("--data.init_args.batchsize", "option --data.init_args.batchsize is not accepted by ClassificationDataModule; "
                                       "did you mean --data.init_args.batch_size?"),
        ("--model.init_args.haed", "option --model.init_args.haed is not accepted by ClassificationTask; "
                                   "did you mean --model.init_args.head?"),
        ("--trainer.max_epocs", "option --trainer.max_epocs is not accepted by the 'trainer' section of 'fit'; "
                                "did you mean --trainer.max_epochs"),
        ("--model.init_args.lr_scheduler.init_args.patiense",
         "is not accepted by ReduceLROnPlateau; did you mean --model.init_args.lr_scheduler.init_args.patience?"),
    ],
    ids=["data", "model", "trainer", "nested-scheduler"],
)
def test_misspelt_option_on_the_command_line(option: str, expected: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    line = _fit_error(["--config", DIGITS, option, "1"], tmp_path, capsys)
    assert expected in line, line


@pytest.mark.parametrize(
    ("section", "good", "bad", "expected"),
    [
        ("data", "batch_size", "batchsize",
         "data.init_args.batchsize is not accepted by ClassificationDataModule; did you mean data.init_args.batch_size?"),
        ("model", "head", "haed", "model.init_args.haed is not accepted by ClassificationTask; "
                                  "did you mean model.init_args.head?"),
        ("trainer", "max_epochs", "max_epoch", "trainer.max_epoch is not accepted by the 'trainer' section of 'fit'; "
                                               "did you mean trainer.max_epochs"),
        ("trainer", "trainer", "trainr", "trainr is not accepted by the 'fit' command; did you mean trainer?"),
    ],
    ids=["data", "model", "trainer", "section"],
)
def test_misspelt_key_in_the_config_file(section: str, good: str, bad: str, expected: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    if good == section:  # the section's own name
        lines = Path(DIGITS).read_text().splitlines()
        row = next(i for i, line in enumerate(lines) if line.startswith(f"{section}:"))
        lines[row] = f"{bad}:"
        path, number = tmp_path / "misspelt.yaml", row + 1
        path.write_text("\n".join(lines) + "\n")
    else:
        path, number = _misspelt_config(tmp_path, section, good, bad)
    line = _fit_error(["--config", str(path)], tmp_path, capsys)
    assert f"{path}, line {number}: {expected}" in line, line


def test_unknown_key_without_a_close_match_lists_the_accepted_ones(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    line = _fit_error(["--config", DIGITS, "--data.init_args.zzzqqq", "1"], tmp_path, capsys)
    assert "option --data.init_args.zzzqqq is not accepted by ClassificationDataModule" in line
    assert "did you mean" not in line
    assert "no accepted key is close (accepted: source, root, image_size" in line and "batch_size" in line
    path, number = _misspelt_config(tmp_path, "trainer", "max_epochs", "qqqzzz")
    line = _fit_error(["--config", str(path)], tmp_path, capsys)
    assert f"{path}, line {number}: trainer.qqqzzz is not accepted" in line
    assert "did you mean" not in line and "accepted: accelerator," in line
