"""benchmarks/gpu_check.sh runs on any machine with ``--dry-run`` (the same steps at tiny sizes, no
install, no nvidia-smi) and ends with its one summary table; the table says what failed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check_summary  # noqa: E402
from precision_throughput import images_per_s  # noqa: E402


def test_images_per_s_leaves_the_warmup_out() -> None:
    steps = [[10.0, 8], [11.0, 8], [12.0, 8], [13.0, 8]]  # step ends; the first is slow (cuDNN, allocator)
    assert images_per_s(steps, warmup=1) == pytest.approx(24 / 3)
    with pytest.raises(ValueError):
        images_per_s(steps, warmup=0)


def test_summary_reports_a_failed_step_as_a_row(tmp_path: Path) -> None:
    (tmp_path / "steps.tsv").write_text("pytest_gpu\t0\t12\nprecision\t1\t30\n")
    text = gpu_check_summary.table(tmp_path)
    lines = text.splitlines()
    assert lines[0].startswith("| check |") and len(lines) == 5  # header, rule, pytest, precision, end_to_end
    assert "FAILED (exit 1" in lines[3] and "see precision.log" in lines[3]
    assert "not run" in lines[4]


@pytest.mark.slow
@pytest.mark.timeout(1200)  # 3.5-6 min on the shared 2-core machine (R50-FPN on a CPU, three fit launches)
def test_dry_run_ends_with_one_summary_table(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "VISIONTASKS_SKIP_INSTALL": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks/gpu_check.sh"), "--dry-run", "--out", str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=1150)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    headers = [i for i, line in enumerate(lines) if line.startswith("| check |")]
    assert len(headers) == 1, "one summary table"
    table = lines[headers[0]:]
    assert all(line.startswith("|") for line in table), "the table ends the output"
    body = "\n".join(table)
    assert "| pytest -m gpu |" in body and "failed" in body  # counts: "N passed, M skipped, 0 failed"
    for precision in ("32-true", "16-mixed", "bf16-mixed"):
        assert f"| {precision} |" in body, precision
    assert "img/s" in body and "end_to_end lenet5" in body and "FAILED" not in body
