"""What every datamodule here shares: the class table and one loader per stage."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from visiontasks.errors import InvalidInputError
from visiontasks.preprocessing import Preprocessing

if TYPE_CHECKING:
    from .check import CheckPlan


def check_sizes(minimum: int = 1, **values: Any) -> None:
    """Refuse a size option below ``minimum`` (``batch_size: -4``, ``image_size: [0, 64]``) naming it,
    before torch or albumentations fail on it deep inside a loader. ``None`` means "not set"."""
    for name, value in values.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        for v in items:
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < minimum):
                raise InvalidInputError(f"data.init_args.{name}={value!r}: must be a number >= {minimum}")


class VisionDataModule(pl.LightningDataModule):
    """A datamodule whose classes are known right after ``__init__`` (``class_names``, and
    ``num_classes``, which the CLI links to the model's) and whose four Lightning loader hooks
    are one method, :meth:`loader`, of the stage (``train``, ``val``, ``test``, ``predict``)."""

    class_names: list[str]
    check_first: bool = False  # ``data.init_args.check``: run the data check before training

    def check_plan(self) -> CheckPlan:
        """Every image, mask and annotation to read, and the problems the annotation files already
        show (``visiontasks check`` and ``check: true`` run it; see :mod:`visiontasks.data.check`)."""
        raise NotImplementedError(f"{type(self).__name__} has no data check")

    def check_before(self, stage: str | None) -> None:
        """With ``check: true``, the first ``setup`` of ``fit`` reads the whole data set first and stops
        with one error listing the problems (count and the first ten) when training would fail. Every
        rank runs it (each reads its data anyway, and all stop alike instead of waiting on rank 0)."""
        if self.check_first and stage in (None, "fit") and not getattr(self, "_checked", False):
            from .check import check_or_raise

            check_or_raise(self.check_plan)
            self._checked = True

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
