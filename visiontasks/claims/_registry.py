"""The registry of the study notes' claims: each claim is one small function that measures
something with our own modules and returns its table and a verdict against the notes' numbers."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

Verdict = Literal["AGREES", "DISAGREES", "MIXED"]
Budget = Literal["small", "full", "tiny"]  # "tiny": the tests' hook (training claims at a toy size)


@dataclass
class ClaimResult:
    """What one claim measured: ``rows`` (one dict per table row, same keys in every row), the
    ``verdict`` against the notes/paper, and ``finding``: one sentence with the decisive numbers.
    ``curves`` (training claims): chart panel -> arm -> ``{"step": [...], "loss": [...]}``, drawn
    side by side into ``<name>.png`` by the report."""

    rows: list[dict[str, Any]]
    verdict: Verdict
    finding: str
    curves: dict[str, dict[str, dict[str, list]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    """One claim of the notes: ``sources`` cite the notes as ``seeds/FILE:LINE[-LINE]``; ``paper``
    the original paper's figure where the notes have none; ``measures`` says what is counted."""

    name: str
    statement: str
    sources: tuple[str, ...]
    measures: str
    run: Callable[[Budget], ClaimResult]
    paper: str = ""
    kind: str = "counting"


CLAIMS: dict[str, Claim] = {}


def claim(name: str, kind: str = "counting") -> Callable[[Callable[[Budget], ClaimResult]], Callable[[Budget], ClaimResult]]:
    """Decorator registering ``fn(budget) -> ClaimResult`` as the claim ``name``; its docstring holds
    the claim's words and citations (:func:`claim_text`)."""

    def register(fn: Callable[[Budget], ClaimResult]) -> Callable[[Budget], ClaimResult]:
        if name in CLAIMS:
            raise ValueError(f"claim {name!r} is registered twice")
        statement, measures, paper, sources = claim_text(fn)
        CLAIMS[name] = Claim(name, statement, sources, measures, fn, paper, kind)
        return fn

    return register


_FIELDS = ("Measures", "Paper", "Notes")


def claim_text(fn: Callable[..., Any]) -> tuple[str, str, str, tuple[str, ...]]:
    """``(statement, measures, paper, sources)`` from a claim function's docstring: the statement
    first, then ``Measures: ...`` (required), ``Paper: ...`` (the paper's figure, optional) and
    ``Notes: seeds/FILE:LINE[-LINE], ...`` (the notes' lines it cites), each joined into one line.

    The words live in the docstring, not in decorator arguments, so that a claim reads as one
    function with its documentation (and eighteen declarations are not eighteen copies of a call)."""
    doc = inspect.getdoc(fn) or ""
    parts = re.split(rf"^({'|'.join(_FIELDS)}):", doc, flags=re.MULTILINE)
    text = {"statement": parts[0], **dict(zip(parts[1::2], parts[2::2]))}
    text = {k: " ".join(v.split()) for k, v in text.items()}
    if not text["statement"] or not text.get("Measures"):
        raise ValueError(f"claim function {fn.__qualname__} needs a docstring: the claim, then 'Measures: ...'")
    sources = tuple(s for s in text.get("Notes", "").replace(",", " ").split() if s)
    return text["statement"], text["Measures"], text.get("Paper", ""), sources


def verdict_of(checks: Sequence[bool]) -> Verdict:
    """AGREES when every check holds, DISAGREES when none does, MIXED otherwise."""
    if not checks:
        raise ValueError("a verdict needs at least one check")
    if all(checks):
        return "AGREES"
    return "DISAGREES" if not any(checks) else "MIXED"


def list_claims() -> list[str]:
    """Registered claim names, in registration order (the notes' order)."""
    return list(CLAIMS)
