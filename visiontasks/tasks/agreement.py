"""What a task takes from its datamodule at ``setup`` (class names, evaluation preprocessing) and
the settings both declare, which must agree; the task never imports the data package, it reads the
datamodule's attributes."""

from __future__ import annotations

from typing import Any

from visiontasks.errors import InvalidInputError


def adopt_data_settings(task: Any, datamodule: Any) -> None:
    """Set ``task.class_names`` and ``task.preprocessing`` from ``datamodule`` (when it has them) and
    raise one line per disagreement: ``num_classes`` and every name in ``task.checked_with_data``."""
    names = getattr(datamodule, "class_names", None)
    if names is not None:
        if len(names) != task.num_classes:
            raise InvalidInputError(
                f"model.num_classes={task.num_classes} but the data has {len(names)} classes "
                f"({', '.join(map(str, names[:10]))}{', ...' if len(names) > 10 else ''}); "
                "make them agree in the config"
            )
        task.class_names = [str(n) for n in names]
    if callable(getattr(datamodule, "preprocessing", None)):
        task.preprocessing = datamodule.preprocessing()
    for attr in task.checked_with_data:
        theirs, mine = getattr(datamodule, attr, None), getattr(task.hparams, attr)
        if theirs is not None and theirs != mine:
            raise InvalidInputError(f"model.{attr}={mine} but data.{attr}={theirs}; make them agree in the config")
