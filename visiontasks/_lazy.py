"""Package attributes imported on first use (PEP 562), so that importing a package stays cheap: a
classification run never imports the detection modules, ``visiontasks --help`` never imports torch."""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def lazy_attributes(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` (its ``__name__``), whose public ``names`` live in
    submodules (``{"DetectionTask": "detection"}``): an attribute is imported on first access and
    then kept in the package. Assign both at the package's top level."""

    def __getattr__(name: str) -> Any:
        if name in names:
            value = getattr(importlib.import_module(f"{package}.{names[name]}"), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
