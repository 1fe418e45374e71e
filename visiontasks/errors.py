"""The one error type for a person's own mistakes (bad data, bad config values, unknown names).

The ``visiontasks`` command prints such an error as one line and exits with status 2, without a
Python traceback (``VISIONTASKS_DEBUG=1`` shows it); every other exception is a bug and keeps its
traceback. A leaf module: every layer of the package may import it.
"""

from __future__ import annotations

import difflib
from typing import Callable, Iterable


class UserInputError(Exception):
    """Something the user gave is wrong; the message names the file or option and what to do.

    A marker base: concrete errors also derive from the builtin they mean (``ValueError``,
    ``FileNotFoundError``), so ``except ValueError`` keeps working."""


class InvalidInputError(UserInputError, ValueError):
    """A value or file content that is wrong (bad annotation, unreadable image, bad option)."""


class MissingFileError(UserInputError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class UnknownNameError(UserInputError, ValueError, KeyError):
    """A name (backbone, detector, format, ...) that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def did_you_mean(name: object, choices: Iterable[str], show: Callable[[str], str] = repr) -> str:
    """``"; did you mean 'resnet18'?"`` for the choices closest to ``name`` (``difflib``), or ``""``;
    ``show`` writes each choice (e.g. as an option ``--data.init_args.batch_size``)."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=3, cutoff=0.6)
    # only those about as close as the closest: "batchsize" is batch_size, not also eval_batch_size
    best = difflib.SequenceMatcher(None, str(name), close[0]).ratio() if close else 0.0
    close = [c for c in close if difflib.SequenceMatcher(None, str(name), c).ratio() >= best - 0.1]
    return f"; did you mean {' or '.join(show(c) for c in close)}?" if close else ""


def unknown_name(kind: str, name: object, choices: Iterable[str]) -> UnknownNameError:
    """``unknown <kind> 'resnet19'; available: ...; did you mean 'resnet18'?`` as an error to raise."""
    choices = sorted(str(c) for c in choices)
    hint = did_you_mean(name, choices)
    return UnknownNameError(f"unknown {kind} {name!r}; available: {', '.join(choices)}{hint}")


def user_message(err: BaseException) -> str:
    """The one line shown for ``err``: for an error re-raised from a DataLoader worker, only the
    original message (PyTorch prepends the worker's traceback as text)."""
    text = str(err)
    if "Original Traceback" in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        name = type(err).__name__
        text = last.split(f"{name}: ", 1)[1] if f"{name}: " in last else last
    return text.strip()


def find_user_error(err: BaseException) -> UserInputError | None:
    """The :class:`UserInputError` behind ``err``: itself, or one in its chain of causes (jsonargparse
    wraps errors raised while instantiating a config's classes in "Does not validate against any of
    the Union subtypes")."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, UserInputError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
