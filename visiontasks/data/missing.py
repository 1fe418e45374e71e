"""Missing files, reported all at once: every reader checks the files a list, JSON or XML names
and raises ONE error with the count and the first few (each with its list line or entry), so the
user fixes the data set in one go instead of one file per run."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from visiontasks.errors import MissingFileError, UserInputError

SHOWN = 10  # missing files named in the message; the rest are counted


def read_list_lines(path: Path) -> list[tuple[int, str]]:
    """``(1-based line number, first field)`` of each non-blank line of a list file (VOC's
    ``ImageSets/*/<split>.txt``)."""
    return [(n, line.split()[0]) for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]


def describe_missing(details: Sequence[str], total: int, what: str) -> str:
    """``"3 of 8 images do not exist: line 2: a.jpg; line 5: b.jpg; ..."``; a single one reads
    ``"line 2: a.jpg, which does not exist"``; ``details`` beyond the first :data:`SHOWN` are counted."""
    if len(details) == 1:
        return f"{details[0]}, which does not exist"
    shown = "; ".join(details[:SHOWN])
    more = f"; and {len(details) - SHOWN} more" if len(details) > SHOWN else ""
    return f"{len(details)} of {total} {what} do not exist: {shown}{more}"


def raise_if_missing(
    where: str,
    details: Sequence[str],
    total: int,
    what: str = "images",
    hint: str = "restore them or remove them from the list",
    error: type[UserInputError] = MissingFileError,
) -> None:
    """Raise one ``error`` naming ``where`` (the list or annotation file) and every missing file
    (``details``: one short text each, e.g. ``"line 3: JPEGImages/a.jpg"``), when there are any."""
    if details:
        raise error(f"{where}: {describe_missing(details, total, what)}; {hint}")
