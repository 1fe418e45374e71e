"""The convention every synthetic data set follows (classification, detection, segmentation).

A generated set lives in its own folder with a stamp file, ``synthetic.json``, recording the
generator's settings. Asking for a set:

* with the same settings as the stamp reuses the folder as it is;
* with other settings rebuilds it;
* in a folder that holds other files but no stamp refuses (never overwrites someone's data).

A set is built in a temporary sibling folder and swapped into place, and the stamp is written to a
temporary file and renamed (``os.replace``), so an interrupted run never leaves a half-written set
that a later run would take for a finished one.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from visiontasks.errors import InvalidInputError, did_you_mean

STAMP = "synthetic.json"
_OLD_STAMPS = (".synthetic.json",)  # the classification writer's earlier name: rebuilt, not refused


def writer_settings(writer: Callable[..., Any], settings: dict[str, Any] | None, option: str) -> dict[str, Any]:
    """``settings`` checked against the keyword arguments of a synthetic ``writer`` (all but its
    ``root``): an unknown key is one error naming ``option`` and the accepted keys (with a
    did-you-mean), instead of the writer's ``TypeError``."""
    accepted = [n for n in inspect.signature(writer).parameters if n != "root"]
    for key in settings or {}:
        if key not in accepted:
            raise InvalidInputError(f"{option}: unknown setting {key!r}{did_you_mean(key, accepted)}; "
                                    f"accepted: {', '.join(accepted)}")
    return dict(settings or {})


def read_stamp(root: str | Path) -> dict[str, Any] | None:
    """The settings recorded in ``root``'s stamp, or ``None`` (no stamp, or an unreadable one)."""
    try:
        return json.loads((Path(root) / STAMP).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_stamp(root: str | Path, settings: dict[str, Any]) -> None:
    """Write ``settings`` as ``root``'s stamp atomically (temporary file, then ``os.replace``)."""
    root = Path(root)
    fd, tmp = tempfile.mkstemp(prefix=f".{STAMP}.", dir=root)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(settings, f, indent=1)
        os.replace(tmp, root / STAMP)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_synthetic(root: str | Path, settings: dict[str, Any], write: Callable[[Path], None]) -> Path:
    """Make ``root`` hold the set described by ``settings``; returns ``root``.

    ``write(folder)`` writes the set's files into an empty ``folder`` (a temporary sibling of
    ``root``). Reuses ``root`` when its stamp equals ``settings`` (compared as JSON), rebuilds it
    when the stamp differs, and raises :class:`FileExistsError` when ``root`` holds files but no stamp.
    """
    root = Path(root)
    settings = json.loads(json.dumps(settings))  # tuples -> lists: compared as they are stored
    if read_stamp(root) == settings:
        return root
    ours = any((root / name).is_file() for name in (STAMP, *_OLD_STAMPS))
    if root.exists() and not ours and any(root.iterdir()):
        raise FileExistsError(
            f"{root} exists and is not a synthetic dataset written by visiontasks ({STAMP} missing); "
            "choose another root for the synthetic data"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        write(tmp)
        write_stamp(tmp, settings)
        if root.exists():
            old = root.with_name(f".{root.name}.old-{os.getpid()}")
            os.replace(root, old)
            os.replace(tmp, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root
