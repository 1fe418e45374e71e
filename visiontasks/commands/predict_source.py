"""``visiontasks predict --ckpt_path X --source PATH|DIR|GLOB [...]``: predict without a data config.

The checkpoint gives the task, its classes and the data's evaluation preprocessing; the images go
through :class:`visiontasks.data.images.ImageFilesDataModule` (the family's own evaluation pipeline)
and a Lightning ``Trainer.predict`` with the task's own prediction writers
(``visiontasks.outputs.default_callbacks``), so the files written are those of
``visiontasks predict --config CONFIG --ckpt_path X`` on the same images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

USAGE = ("visiontasks predict --ckpt_path CKPT --source PATH|DIR|GLOB [--source ...] [--cam true] "
         "[--cam_class NAME] [options]")

DESCRIPTION = """\
Predict without a data config: the checkpoint carries the task, its class names and the data's
evaluation preprocessing (resize, size, mean/std, channels). --source takes an image file, a folder
(searched recursively) or a quoted glob pattern ("imgs/*.png", "**" recursive); give it more than once
for several. Writes the same files as `visiontasks predict --config ...` (classification:
predictions.csv/json; segmentation: <stem>_mask.png and <stem>_overlay.png; detection: results.json
and <id>_<stem>.png drawings of the detections scoring >= 0.5 after a class-agnostic NMS at IoU 0.7).
Classification with --cam true also writes <stem>_cam.png: the class activation map of the predicted
class (or of --cam_class NAME) over the image at its own size, with a colour bar (docs/cam.md)."""


def parse_bool(text: str) -> bool:
    """``true/false`` (also ``yes/no``, ``1/0``, any case), as the LightningCLI options read them."""
    value = str(text).strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="visiontasks predict", usage=USAGE, description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt_path", required=True, help="a checkpoint written by visiontasks fit (any task)")
    p.add_argument("--source", action="append", required=True, metavar="PATH|DIR|GLOB",
                   help="images to predict on (repeatable)")
    p.add_argument("--output", default=None,
                   help="folder for the prediction files (default: <run>/predict_source/predictions "
                        "for a checkpoint under <run>/checkpoints/, else predictions/ beside the checkpoint)")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--num_workers", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    p.add_argument("--cam", type=parse_bool, default=False, metavar="true|false",
                   help="classification: also write <stem>_cam.png, the class activation map of the predicted class")
    p.add_argument("--cam_class", default=None, metavar="NAME",
                   help="the class whose map --cam draws (implies --cam true; default: the predicted class)")
    return p


def default_output(ckpt: Path) -> Path:
    """``<run>/predict_source/predictions`` for ``<run>/checkpoints/X.ckpt``, else ``predictions``
    beside the checkpoint."""
    if ckpt.parent.name == "checkpoints":
        return ckpt.parent.parent / "predict_source" / "predictions"
    return ckpt.parent / "predictions"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.batch_size < 1:
        raise SystemExit("visiontasks predict: error: --batch_size must be >= 1")
    import lightning.pytorch as pl

    from visiontasks.outputs import default_callbacks
    from visiontasks.predictor import Predictor, load_task
    from visiontasks.tasks.facets import enable_cam

    predictor = Predictor(load_task(args.ckpt_path), "cpu")  # checks the task can predict without data
    enable_cam(predictor.task, args.cam, args.cam_class)  # the class name is checked before any image is read
    dm = predictor.datamodule(args.source, args.batch_size, args.num_workers)  # errors name a bad source
    out = Path(args.output) if args.output else default_output(Path(args.ckpt_path))
    callbacks = default_callbacks(predictor.task)
    for cb in callbacks:
        if hasattr(cb, "output_dir"):
            cb.output_dir = out
    device = str(args.device)
    if device == "auto":
        accelerator, devices = "auto", 1
    elif device.startswith("cuda"):
        accelerator, devices = "gpu", [int(device.split(":")[1])] if ":" in device else 1
    else:
        accelerator, devices = device, 1
    trainer = pl.Trainer(accelerator=accelerator, devices=devices, logger=False, callbacks=callbacks,
                         enable_checkpointing=False, enable_model_summary=False, default_root_dir=str(out.parent))
    trainer.predict(predictor.task, datamodule=dm, return_predictions=False)
    print(f"predictions for {len(dm.images)} images written to {out}")
    return 0
