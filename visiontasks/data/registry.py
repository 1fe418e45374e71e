"""A small name -> class registry: one per family of readers (detection formats, segmentation formats).

A new data format is one file with a reader class decorated by its family's ``register_reader``
(plus the import that runs the decorator); the datamodules look readers up by the ``format`` name.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from visiontasks.errors import unknown_name

T = TypeVar("T")


class Registry(Generic[T]):
    """Classes by name; ``what`` names the family in error messages (e.g. ``"detection format"``)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._classes: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator: ``@registry.register("coco")``. A name is registered once."""

        def add(cls: type[T]) -> type[T]:
            if name in self._classes and self._classes[name] is not cls:
                raise ValueError(f"{self.what} {name!r} is registered twice ({self._classes[name]} and {cls})")
            self._classes[name] = cls
            cls.name = name  # type: ignore[attr-defined]
            return cls

        return add

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``; an unknown name raises an ``UnknownNameError`` (a ``ValueError``) listing the known."""
        try:
            return self._classes[name]
        except KeyError:
            raise unknown_name(self.what, name, self.names()) from None

    def names(self) -> list[str]:
        return sorted(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes
