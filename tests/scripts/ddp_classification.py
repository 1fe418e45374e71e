"""Fit LeNet-5 on digits with 2 CPU processes (DDP), validate it and predict the test split under DDP.

Run as a script (Lightning's DDP launcher re-runs the command line in the second process, so it
must not be pytest's). Usage: ddp_classification.py OUT_DIR. Rank 0 writes OUT_DIR/result.json.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch

from visiontasks.data import ClassificationDataModule
from visiontasks.outputs import ClassificationPredictionWriter
from visiontasks.tasks import ClassificationTask

warnings.filterwarnings("ignore")
torch.set_num_threads(1)


def main(out: Path) -> None:
    pl.seed_everything(0, workers=True)
    dm = ClassificationDataModule("digits", image_size=28, in_chans=1, batch_size=32, augment="none")
    task = ClassificationTask(
        "lenet5", 10, in_chans=1, optimizer=lambda p: torch.optim.AdamW(p, lr=3e-3)
    )
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=3, default_root_dir=str(out),
        logger=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[ClassificationPredictionWriter(out / "predictions")],
    )
    trainer.fit(task, datamodule=dm)
    ddp_val = trainer.validate(task, datamodule=dm, verbose=False)[0]["val/acc"]
    trainer.save_checkpoint(out / "ddp.ckpt")  # collective: every rank calls it, rank 0 writes
    trainer.predict(task, datamodule=dm, return_predictions=False)  # rank 0 writes all ranks' rows
    if trainer.is_global_zero:
        # The single-process comparison runs in the test's own process: a second Trainer here would
        # inherit this process group's environment.
        result = {"world_size": trainer.world_size, "ddp_val_acc": ddp_val, "val_size": len(dm._splits["val"][1]),
                  "predict_size": len(dm.predict_dataloader().dataset)}
        (out / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
