"""Run the claims and write their results: a Markdown report, a JSON file and, for each training
claim, a PNG chart of its loss curves."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ._registry import CLAIMS, Budget, Claim, ClaimResult
from .pending import NOT_YET_MEASURED


@dataclass
class Outcome:
    """One claim, what it measured, and its wall time (seconds)."""

    claim: Claim
    result: ClaimResult
    seconds: float = 0.0


def run_claims(names: Sequence[str], budget: Budget) -> list[Outcome]:
    """Run the named claims (registration order is kept by the caller's list)."""
    import time

    outcomes = []
    for n in names:
        t0 = time.perf_counter()
        result = CLAIMS[n].run(budget)
        outcomes.append(Outcome(CLAIMS[n], result, round(time.perf_counter() - t0, 1)))
    return outcomes


def _cell(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v).replace("|", "\\|")


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of ``rows`` (columns: the first row's keys)."""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def _cites(c: Claim) -> str:
    return ", ".join(f"`{s}`" for s in c.sources) or "(not in the notes)"


def chart_name(c: Claim) -> str:
    """File name of a training claim's loss-curve chart, next to the report."""
    return f"{c.name}.png"


def render_markdown(outcomes: list[Outcome], command: str, date: str, charts: str = "") -> str:
    """The report: a summary table, then one section per claim (with its chart, linked under the
    folder ``charts``: "" = next to the report), then the claims not yet measured."""
    out = [f"Command: `{command}`  ", f"Date: {date}", "",
           "| claim | verdict | finding | notes | s |", "|---|---|---|---|---|"]
    out += [f"| {o.claim.name} | **{o.result.verdict}** | {_cell(o.result.finding)} | {_cites(o.claim)} | {o.seconds:.0f} |"
            for o in outcomes]
    for o in outcomes:
        c = o.claim
        out += ["", f"### {c.name}: {o.result.verdict}", "", f"Claim: {c.statement}  ", f"Notes: {_cites(c)}  "]
        if c.paper:
            out.append(f"Paper: {c.paper}  ")
        out += [f"Measures: {c.measures}", "", markdown_table(o.result.rows), "", f"Finding: {o.result.finding}"]
        if o.result.curves:
            out += ["", f"![{c.name}: training loss]({charts}{chart_name(c)})"]
    out += ["", "### Not yet measured", "",
            "| claim | statement | notes |", "|---|---|---|"]
    out += [f"| {n} | {s} | {', '.join(f'`{c}`' for c in src)} |" for n, s, src in NOT_YET_MEASURED]
    return "\n".join(out) + "\n"


def to_json(outcomes: list[Outcome], command: str, date: str) -> dict[str, Any]:
    """The JSON form of the report."""
    return {
        "command": command, "date": date,
        "claims": [{"name": o.claim.name, "kind": o.claim.kind, "statement": o.claim.statement,
                    "sources": list(o.claim.sources), "paper": o.claim.paper, "measures": o.claim.measures,
                    "verdict": o.result.verdict, "finding": o.result.finding, "seconds": o.seconds, "rows": o.result.rows,
                    "curves": o.result.curves}
                   for o in outcomes],
        "not_yet_measured": [{"name": n, "statement": s, "sources": list(src)} for n, s, src in NOT_YET_MEASURED],
    }


def write_report(outcomes: list[Outcome], out_dir: Path, command: str, date: str) -> tuple[Path, Path]:
    """Write ``claims.md``, ``claims.json`` and the training claims' charts under ``out_dir`` (created);
    returns the report's paths."""
    from ._chart import loss_chart

    out_dir.mkdir(parents=True, exist_ok=True)
    for o in outcomes:
        if o.result.curves:
            loss_chart(f"{o.claim.name}: {o.result.verdict}", o.result.curves, out_dir / chart_name(o.claim))
    md, js = out_dir / "claims.md", out_dir / "claims.json"
    md.write_text(render_markdown(outcomes, command, date), encoding="utf-8")
    js.write_text(json.dumps(to_json(outcomes, command, date), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return md, js
