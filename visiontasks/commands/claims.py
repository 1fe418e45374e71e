"""``visiontasks benchmark claims [--only NAME ...] [--budget small|full] [--output DIR]``: the study
notes' claims, each measured with our own modules, with a verdict (AGREES / DISAGREES / MIXED).

Writes ``claims.md`` (Markdown tables), ``claims.json`` and one ``<claim>.png`` of loss curves per
training claim under ``--output`` (default ``runs/claims/<date>``) and prints the summary. The counting
claims (parameters, multiply-adds, receptive fields) are exact and instant; the training claims are
seeded SGD runs on one CPU thread: ``--budget small`` (default) sizes them for a 2-core CPU (all
claims in well under 30 minutes), ``full`` for a GPU (used when there is one).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path


def parser() -> argparse.ArgumentParser:
    from visiontasks.claims import list_claims

    p = argparse.ArgumentParser(prog="visiontasks benchmark claims", description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", metavar="NAME", default=None, help=f"claims to run: {', '.join(list_claims())}")
    p.add_argument("--budget", choices=("small", "full"), default="small")
    p.add_argument("--output", type=Path, default=None, help="run folder (default: runs/claims/<date>)")
    return p


def main(argv: list[str]) -> int:
    from visiontasks.claims import list_claims
    from visiontasks.claims.report import run_claims, write_report

    args = parser().parse_args(argv)
    names = list_claims()
    if args.only:
        unknown = [n for n in args.only if n not in names]
        if unknown:
            print(f"visiontasks benchmark claims: unknown claim(s) {unknown}; available: {', '.join(names)}",
                  file=sys.stderr)
            return 2
        names = [n for n in names if n in args.only]
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    out_dir = args.output or Path("runs") / "claims" / date
    command = "visiontasks benchmark claims " + " ".join(argv) if argv else "visiontasks benchmark claims"
    outcomes = run_claims(names, args.budget)
    md, js = write_report(outcomes, out_dir, command.strip(), date)
    width = max(len(o.claim.name) for o in outcomes)
    for o in outcomes:
        print(f"{o.claim.name:<{width}}  {o.result.verdict:<9}  {o.seconds:6.1f} s  {o.result.finding}")
    print(f"wrote {md} and {js}")
    return 0
