"""Classification outputs: predictions CSV/JSON, the confusion-matrix figure, the test metrics."""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Any, Sequence

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.callbacks import BasePredictionWriter, Callback
from PIL import Image
from torch import Tensor

from visiontasks.data.io import read_image
from visiontasks.ops import map_to_original
from visiontasks.runs import run_dir

from .common import PerImageWriter, gather_rows, output_dir, write_text_atomic
from .drawing import cam_title, class_colours, render_cam


class ClassificationPredictionWriter(BasePredictionWriter):
    """``predictions.csv`` and ``predictions.json`` in ``output_dir`` (default: the run's
    ``predictions`` folder): one row per image with ``id``, ``index``, ``name`` and ``p_<class>``
    (softmax probability, 6 decimals). Under DDP the rows of all processes are gathered (repeated
    images once) and rank 0 writes. Reads ``predict_step``'s per-image ``{"id", "index", "probs"}``."""

    def __init__(self, output_dir: str | os.PathLike | None = None) -> None:
        super().__init__("batch_and_epoch")
        self.output_dir = output_dir
        self._rows: list[dict[str, Any]] = []

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._rows = []

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Any,
                           batch_indices: Sequence[int] | None, batch: Any, batch_idx: int,
                           dataloader_idx: int) -> None:
        names = pl_module.class_names
        for item in prediction:
            i = int(item["index"])
            row = {"id": str(item["id"]), "index": i, "name": names[i]}
            row.update({f"p_{n}": round(p, 6) for n, p in zip(names, item["probs"].float().cpu().tolist())})
            self._rows.append(row)

    def write_on_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, predictions: Sequence[Any],
                           batch_indices: Sequence[Any]) -> None:
        rows = gather_rows(self._rows, "id")
        self._rows = []
        if not trainer.is_global_zero:
            return
        folder = output_dir(trainer, self.output_dir)
        write_text_atomic(folder / "predictions.json", json.dumps(rows, indent=1))
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=["id", "index", "name", *[f"p_{n}" for n in pl_module.class_names]])
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(folder / "predictions.csv", text.getvalue())
        print(f"predictions for {len(rows)} images written to {folder}")


class CAMWriter(PerImageWriter):
    """``<stem>_cam.png`` per image in ``output_dir`` (default: the run's ``predictions`` folder) when
    ``predict_step`` made class activation maps (``visiontasks predict ... --cam true``; else nothing):
    the map of the predicted class (or of ``--cam_class``) stretched back from the model input to
    the image file's size (the inverse of the evaluation resize) over the file's pixels, with a
    colour bar (:func:`~visiontasks.outputs.drawing.render_cam`). An image without a file (an
    in-memory source such as ``digits``, id ``digits:17``) is drawn on the model input, un-normalised."""

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Any,
                           batch_indices: Any, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        if not prediction or "cam" not in prediction[0]:
            return
        folder = output_dir(trainer, self.output_dir)
        prep = getattr(pl_module, "preprocessing", None)
        for i, item in enumerate(prediction):
            path = Path(str(item["id"]))
            image = read_image(path, 3) if path.is_file() else _model_input(batch["image"][i], prep)
            names = list(pl_module.class_names)
            k, c, method = int(item["index"]), int(item["cam_class"]), str(item["cam_method"])
            title = cam_title(names[k], float(item["probs"][k]), names[c], method)
            cam = map_to_original(item["cam"].float().cpu(), image.shape[:2]).numpy()
            picture = render_cam(image, cam, title, method, class_colours(len(names))[c])
            stem = path.stem if path.is_file() else str(item["id"]).replace(":", "_").replace("/", "_")
            Image.fromarray(picture).save(folder / f"{stem}_cam.png")


def _model_input(x: Tensor, prep: Any) -> np.ndarray:
    """A normalised model input ``[C, H, W]`` back to ``uint8 [H, W, 3]`` (grey repeated)."""
    mean = np.asarray(prep.mean if prep is not None else [0.5] * x.shape[0], np.float32)
    std = np.asarray(prep.std if prep is not None else [0.5] * x.shape[0], np.float32)
    pixels = (x.float().cpu().numpy().transpose(1, 2, 0) * std + mean).clip(0, 1) * 255
    pixels = pixels.round().astype(np.uint8)
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


class ConfusionMatrixPlot(Callback):
    """``<run>/confusion_matrix/<stage>_matrix.json`` (``{"classes", "matrix"}``, rows: truth,
    columns: prediction) after each validation (not the sanity check) and test; the figure
    ``<stage>.png`` and a TensorBoard figure ``<stage>/confusion_matrix`` after ``test``,
    ``validate``, and once at the end of ``fit`` (the last validation's): rendering it with
    matplotlib took ~2 s, as long as a LeNet-5 epoch on 8,000 images. Reads the matrix from
    ``pl_module.stage_results[stage]["confmat"]`` (rank 0 only; the metric is already synced)."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer, pl_module, "val", figure=trainer.state.fn != "fit")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer, pl_module, "val")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer, pl_module, "test")

    def _save(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str, figure: bool = True) -> None:
        results = getattr(pl_module, "stage_results", {}).get(stage)
        if trainer.sanity_checking or not trainer.is_global_zero or not results or "confmat" not in results:
            return
        matrix = results["confmat"].cpu()
        names = list(pl_module.class_names)
        folder = run_dir(trainer) / "confusion_matrix"
        folder.mkdir(exist_ok=True)
        write_text_atomic(folder / f"{stage}_matrix.json", json.dumps({"classes": names, "matrix": matrix.tolist()}))
        if not figure:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from torchmetrics.utilities.plot import plot_confusion_matrix

        n = len(names)
        fig, ax = plt.subplots(figsize=(max(4, 0.6 * n + 2), max(4, 0.6 * n + 1.5)))
        plot_confusion_matrix(matrix, ax=ax, labels=names, add_text=n <= 30)
        epoch = pl_module.current_epoch
        ax.set_title(f"{stage} confusion matrix" + ("" if stage == "test" else f", epoch {epoch}"))
        fig.savefig(folder / f"{stage}.png", dpi=100, bbox_inches="tight")
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_figure"):  # TensorBoard
                experiment.add_figure(f"{stage}/confusion_matrix", fig, epoch)
        plt.close(fig)


class MetricsJSONWriter(Callback):
    """After ``test``: ``<run>/test_metrics.json``, the values the task logged for the test set
    (``pl_module.stage_logged["test"]``; rank 0)."""

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        values = getattr(pl_module, "stage_logged", {}).get("test")
        if trainer.is_global_zero and values is not None:
            write_text_atomic(run_dir(trainer) / "test_metrics.json", json.dumps(values, indent=2))


def task_callbacks() -> list[Callback]:
    """The classification task's writers: predictions, class activation maps (when asked for), the
    confusion matrix, the test metrics."""
    return [ClassificationPredictionWriter(), CAMWriter(), ConfusionMatrixPlot(), MetricsJSONWriter()]
