"""The registry of the study notes' claims: each claim is one small function that measures
something with our own modules and returns its table and a verdict against the notes' numbers."""

from __future__ import annotations

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


def claim(name: str, statement: str, sources: Sequence[str], measures: str, paper: str = "",
          kind: str = "counting") -> Callable[[Callable[[Budget], ClaimResult]], Callable[[Budget], ClaimResult]]:
    """Decorator registering ``fn(budget) -> ClaimResult`` as the claim ``name``."""

    def register(fn: Callable[[Budget], ClaimResult]) -> Callable[[Budget], ClaimResult]:
        if name in CLAIMS:
            raise ValueError(f"claim {name!r} is registered twice")
        CLAIMS[name] = Claim(name, statement, tuple(sources), measures, fn, paper, kind)
        return fn

    return register


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
