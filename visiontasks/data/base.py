"""What every datamodule here shares: the class table and one loader per stage."""

from __future__ import annotations

from abc import abstractmethod

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from visiontasks.preprocessing import Preprocessing


class VisionDataModule(pl.LightningDataModule):
    """A datamodule whose classes are known right after ``__init__`` (``class_names``, and
    ``num_classes``, which the CLI links to the model's) and whose four Lightning loader hooks
    are one method, :meth:`loader`, of the stage (``train``, ``val``, ``test``, ``predict``)."""

    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @abstractmethod
    def preprocessing(self) -> Preprocessing:
        """How evaluation turns a file's image into a model input (tasks save it in checkpoints)."""

    @abstractmethod
    def loader(self, stage: str) -> DataLoader:
        """The loader of ``stage`` (training shuffles; the others keep the order)."""

    def train_dataloader(self) -> DataLoader:
        return self.loader("train")

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.loader("predict")
