"""The one summary table of ``benchmarks/gpu_check.sh``: ``python gpu_check_summary.py OUT_DIR``.

Reads what the steps left in ``OUT_DIR``: ``steps.tsv`` (step, exit status, seconds; written by the
script), ``pytest_gpu.xml`` (``pytest -m gpu --junitxml``), ``precision.json``
(benchmarks/precision_throughput.py) and ``end_to_end.json`` (benchmarks/end_to_end.py), and prints
one Markdown table: a row per check, a failed or missing step as a row that says so.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

HEADER = ("check", "setting", "visiontasks", "plain", "ratio", "GPU util (vt / plain)", "status")


def _util(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}%"


def _steps(out: Path) -> dict[str, tuple[int, float]]:
    rows = {}
    path = out / "steps.tsv"
    if path.is_file():
        for line in path.read_text().splitlines():
            name, rc, seconds = line.split("\t")
            rows[name] = (int(rc), float(seconds))
    return rows


def _status(steps: dict[str, tuple[int, float]], name: str) -> str:
    if name not in steps:
        return "not run"
    rc, seconds = steps[name]
    return f"ok ({seconds:.0f} s)" if rc == 0 else f"FAILED (exit {rc}, {seconds:.0f} s; see {name}.log)"


def pytest_row(out: Path, steps: dict[str, tuple[int, float]]) -> list[str]:
    counts = "no report"
    path = out / "pytest_gpu.xml"
    if path.is_file():
        suite = ET.parse(path).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        n, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
        failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        counts = f"{n - skipped - failed} passed, {skipped} skipped, {failed} failed"
    return ["pytest -m gpu", "CUDA paths", counts, "", "", "", _status(steps, "pytest_gpu")]


def precision_rows(out: Path, steps: dict[str, tuple[int, float]]) -> list[list[str]]:
    path = out / "precision.json"
    if not path.is_file():
        return [["Faster R-CNN R50-FPN train", "", "", "", "", "", _status(steps, "precision")]]
    report = json.loads(path.read_text())
    check = f"Faster R-CNN R50-FPN train, {report['size']} px, batch {report['batch']}"
    rows = []
    for r in report["rows"]:
        if "skipped" in r:
            rows.append([check, r["precision"], "", "", "", "", f"skipped: {r['skipped']}"])
            continue
        finite = all(r.get(f"last_loss_{s}") is not None for s in ("visiontasks", "plain"))
        rows.append([check, r["precision"], f"{r['img_per_s_visiontasks']:.1f} img/s", f"{r['img_per_s_plain']:.1f} img/s",
                     f"{r['ratio']:.2f}", f"{_util(r['gpu_util_visiontasks'])} / {_util(r['gpu_util_plain'])}",
                     _status(steps, "precision") + ("" if finite else "; a loss was not finite")])
    return rows


def end_to_end_rows(out: Path, steps: dict[str, tuple[int, float]]) -> list[list[str]]:
    path = out / "end_to_end.json"
    if not path.is_file():
        return [["end_to_end", "", "", "", "", "", _status(steps, "end_to_end")]]
    report = json.loads(path.read_text())
    rows = []
    for case in report["cases"]:
        fit, plain = case["fit"], case["plain"]
        rows.append([f"end_to_end {case['case']} (fit vs plain loop)", f"default loaders, {report['epochs']} epochs",
                     f"{fit['images_per_s']:.1f} img/s", f"{plain['images_per_s']:.1f} img/s",
                     f"{fit['epochs_per_s'] / plain['epochs_per_s']:.2f}",
                     f"{_util(fit['gpu_util'])} / {_util(plain['gpu_util'])}", _status(steps, "end_to_end")])
    return rows


def table(out: Path) -> str:
    steps = _steps(out)
    rows: list[Any] = [pytest_row(out, steps), *precision_rows(out, steps), *end_to_end_rows(out, steps)]
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(Path(sys.argv[1])))
