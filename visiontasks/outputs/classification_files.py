"""Reading classification prediction files: the ``predictions.csv`` that
:class:`~visiontasks.outputs.classification.ClassificationPredictionWriter` writes (``id``, ``index``,
``name``, ``p_<class>``) or any CSV with ``id`` and ``name``; read by ``visiontasks evaluate``. No torch
or Lightning here; errors name the file.
"""

from __future__ import annotations

import csv
from pathlib import Path

from visiontasks.errors import InvalidInputError, MissingFileError


def read_csv(path: str | Path, what: str) -> tuple[list[str], list[dict[str, str]]]:
    """``(column names, rows)`` of a CSV file; ``what`` (e.g. ``predictions``) names it in errors."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{what} {path} does not exist")
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except (UnicodeDecodeError, csv.Error) as err:
        raise InvalidInputError(f"{what} {path}: not a readable CSV ({err})") from None


def read_classification_predictions(path: str | Path) -> tuple[list[str], list[dict[str, str]], list[str]]:
    """``(columns, rows, probability columns p_<class> in order)`` of a predictions CSV, which needs
    ``id`` and ``name`` or ``p_<class>`` columns."""
    cols, rows = read_csv(path, "predictions")
    prob_cols = [c for c in cols if c.startswith("p_")]
    if "id" not in cols or ("name" not in cols and not prob_cols):
        raise InvalidInputError(f"predictions {path}: needs the columns id and name (or p_<class>), has {cols}")
    return cols, rows, prob_cols
