"""Reading a config file the way ``visiontasks fit`` does: jsonargparse's loader in LightningCLI's
parser mode (``omegaconf`` when installed, so ``${...}`` interpolation works, else ``yaml``). The
one place a command reads a config by hand (``visiontasks check`` builds only the data section);
no torch or Lightning here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from visiontasks.errors import InvalidInputError, MissingFileError


def parser_mode() -> str:
    """LightningCLI's ``parser_mode`` for visiontasks: ``omegaconf`` when it is installed, else ``yaml``."""
    return "omegaconf" if importlib.util.find_spec("omegaconf") is not None else "yaml"


def load_value(text: str, where: str, mode: str = "yaml") -> Any:
    """``text`` parsed by jsonargparse's loader of ``mode`` (as a value given on the command line is:
    ``14`` -> 14, ``[1, 2]`` -> a list, ``1e-3`` -> a float); a parse error names ``where``."""
    from jsonargparse import get_loader

    try:
        return get_loader(mode)(text)
    except Exception as err:  # the loader only parses: any error is the text's
        raise InvalidInputError(f"{where}: not valid {mode.upper() if mode == 'yaml' else mode} ({err})") from None


def read_config(path: str | Path) -> dict[str, Any]:
    """The config file at ``path`` as a plain dict, read as ``fit --config`` reads it
    (:func:`parser_mode`); a missing file, a parse error or a file that is not a mapping is a
    :class:`~visiontasks.errors.UserInputError` naming the file."""
    file = Path(path)
    if not file.is_file():
        raise MissingFileError(f"config file {file} does not exist")
    cfg = load_value(file.read_text(encoding="utf-8"), str(file), parser_mode())
    if not isinstance(cfg, dict):
        raise InvalidInputError(f"{file}: a config is a mapping of sections (model:, data:, trainer:), got {type(cfg).__name__}")
    return cfg
