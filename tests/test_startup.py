"""Start-up: what ``visiontasks`` commands import (each check in a fresh interpreter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _child_modules(code: str, cwd: Path | None = None) -> dict:
    """Run ``code`` in a fresh Python (this checkout first on the path); it prints one JSON line last."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd or ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_help_imports_neither_torch_nor_lightning():
    seen = _child_modules(
        "import io, json, sys, contextlib\n"
        "import visiontasks.cli\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    rc = visiontasks.cli.main(['--help'])\n"
        "print(json.dumps({'rc': rc, 'text': out.getvalue(),\n"
        "                  'torch': 'torch' in sys.modules, 'lightning': 'lightning' in sys.modules}))\n"
    )
    assert seen["rc"] == 0
    assert "commands:" in seen["text"] and "fit" in seen["text"]
    assert seen["torch"] is False
    assert seen["lightning"] is False


def test_tasks_import_no_plotting_image_or_coco_libraries():
    # matplotlib may already come with torchmetrics (imported by Lightning): then it is not ours to
    # avoid, so it is checked only when Lightning and torchmetrics alone did not import it
    seen = _child_modules(
        "import json, sys\n"
        "import visiontasks.tasks\n"
        "lazy = {'torch': 'torch' in sys.modules}\n"
        "import lightning.pytorch, torchmetrics\n"
        "before = set(sys.modules)\n"
        "from visiontasks.tasks import BaseTask, ClassificationTask, DetectionTask, SegmentationTask\n"
        "new = sorted(set(sys.modules) - before)\n"
        "print(json.dumps({'lazy': lazy, 'new': new}))\n"
    )
    assert seen["lazy"]["torch"] is False  # the package itself imports its classes on first use
    roots = {name.split(".")[0] for name in seen["new"]}
    for heavy in ("matplotlib", "skimage", "pycocotools", "sklearn", "tensorboard"):
        assert heavy not in roots, f"importing the tasks imported {heavy}"
    assert not [m for m in seen["new"] if m.startswith("visiontasks.data")], "tasks must not import data"


def test_classification_cli_imports_no_detection_or_segmentation_modules(tmp_path):
    config = ROOT / "configs" / "classification" / "lenet5_digits.yaml"
    seen = _child_modules(
        "import json, sys\n"
        "from visiontasks.cli import build_cli\n"
        "from visiontasks.outputs import default_callbacks\n"
        f"cli = build_cli(['--config', {str(config)!r}, '--trainer.logger', 'false'], run=False)\n"
        "callbacks = [type(c).__name__ for c in default_callbacks(cli.model)]\n"
        "mods = sorted(m for m in sys.modules if m.startswith('visiontasks') or m.split('.')[0] in\n"
        "              ('skimage', 'pycocotools', 'faster_coco_eval'))\n"
        "print(json.dumps({'callbacks': callbacks, 'modules': mods}))\n",
        cwd=tmp_path,
    )
    assert seen["callbacks"] == ["ClassificationPredictionWriter", "CAMWriter", "ConfusionMatrixPlot", "MetricsJSONWriter"]
    for unused in ("visiontasks.tasks.detection", "visiontasks.tasks.segmentation", "visiontasks.data.detection",
                   "visiontasks.data.segmentation", "visiontasks.outputs.detection",
                   "visiontasks.outputs.segmentation", "visiontasks.data.proposals", "skimage", "pycocotools",
                   "faster_coco_eval"):
        assert unused not in seen["modules"], f"a classification run imported {unused}"


def test_lazy_packages_keep_their_public_names():
    from visiontasks import data, outputs, tasks
    from visiontasks.data import ClassificationDataModule, DetectionDataModule, SegmentationDataModule
    from visiontasks.outputs import CocoResultsWriter, IoUTableWriter, MetricsJSONWriter
    from visiontasks.tasks import BaseTask, DetectionTask

    assert issubclass(DetectionTask, BaseTask)
    assert {ClassificationDataModule.__name__, DetectionDataModule.__name__, SegmentationDataModule.__name__} <= set(dir(data))
    assert {"CocoResultsWriter", "IoUTableWriter", "MetricsJSONWriter"} <= set(dir(outputs))
    assert CocoResultsWriter.__module__ == "visiontasks.outputs.detection"
    assert IoUTableWriter.__module__ == "visiontasks.outputs.segmentation"
    assert MetricsJSONWriter.__module__ == "visiontasks.outputs.classification"
    assert "SegmentationTask" in dir(tasks)
    try:
        tasks.NoSuchTask  # noqa: B018
    except AttributeError as err:
        assert "NoSuchTask" in str(err)
    else:
        raise AssertionError("unknown names must raise AttributeError")
