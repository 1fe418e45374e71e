"""Start-up time of the ``visiontasks`` command, two source trees alternated.

Times, from the shell (a fresh ``visiontasks`` process each), for the tree under test (``--new``,
default this checkout) and a baseline tree (``--old``, e.g. ``git worktree add /tmp/old pre-wave2``):

(a) ``visiontasks --help``
(b) ``visiontasks summary lenet5 --num_classes 10``
(c) ``visiontasks fit --config configs/classification/lenet5_digits.yaml --trainer.max_steps 1
    --trainer.enable_progress_bar false``: seconds to the first training step (a probe callback
    added with ``--trainer.callbacks+=`` prints the time at ``on_train_batch_start``) and to exit.

Rounds alternate old/new (the machine may be shared); medians and ratios old/new are printed.

    OMP_NUM_THREADS=1 python benchmarks/startup.py --old /tmp/old-startup --rounds 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBE = '''
import time
from lightning.pytorch import Callback


class FirstStep(Callback):
    """Prints the wall-clock time of the first training batch, once."""

    def __init__(self) -> None:
        self.done = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.done:
            self.done = True
            print(f"FIRST_STEP_AT {time.time():.6f}", flush=True)
'''

CONFIG = "configs/classification/lenet5_digits.yaml"


def _command() -> list[str]:
    """The ``visiontasks`` console script of this Python, else the same entry point via ``-c``."""
    script = Path(sys.executable).parent / "visiontasks"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from visiontasks.cli import main; sys.exit(main())"]


def _time(tree: Path, args: list[str], probe_dir: Path, workdir: Path) -> tuple[float, float | None]:
    """``(seconds to exit, seconds to the first training step or None)`` of one run in ``tree``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), str(probe_dir)]))
    start = time.time()
    proc = subprocess.run([*_command(), *args], cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.time() - start
    if proc.returncode not in (0, 2) or (args[0] == "fit" and proc.returncode != 0):
        raise SystemExit(f"{tree}: visiontasks {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    first = None
    for line in proc.stdout.splitlines():
        if line.startswith("FIRST_STEP_AT "):
            first = float(line.split()[1]) - start
    return wall, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", type=Path, required=True, help="baseline source tree (its root)")
    parser.add_argument("--new", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()

    cases = {
        "--help": ["--help"],
        "summary lenet5": ["summary", "lenet5", "--num_classes", "10"],
        "fit 1 step": ["fit", "--config", "CONFIG", "--trainer.max_steps", "1",
                       "--trainer.enable_progress_bar", "false", "--trainer.callbacks+=vt_probe.FirstStep"],
    }
    results: dict[tuple[str, str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        probe_dir = Path(tmp) / "probe"
        probe_dir.mkdir()
        (probe_dir / "vt_probe.py").write_text(PROBE)
        for r in range(opts.rounds):
            for side, tree in (("old", opts.old), ("new", opts.new)) if r % 2 == 0 else (("new", opts.new), ("old", opts.old)):
                tree = tree.resolve()
                for name, args in cases.items():
                    args = [str(tree / CONFIG) if a == "CONFIG" else a for a in args]
                    workdir = Path(tmp) / f"{side}{r}"
                    workdir.mkdir(exist_ok=True)
                    wall, first = _time(tree, args, probe_dir, workdir)
                    results.setdefault((name, "wall", side), []).append(wall)
                    if first is not None:
                        results.setdefault((name, "first step", side), []).append(first)
                    shutil.rmtree(workdir / "runs", ignore_errors=True)
            print(f"round {r + 1}/{opts.rounds} done", file=sys.stderr)
    print(f"medians of {opts.rounds} alternated rounds (seconds), old = {opts.old}, new = {opts.new}")
    print(f"{'command':<16} {'measure':<11} {'old':>7} {'new':>7} {'old/new':>8}")
    for name in cases:
        for measure in ("first step", "wall"):
            if (name, measure, "old") not in results:
                continue
            old = statistics.median(results[(name, measure, "old")])
            new = statistics.median(results[(name, measure, "new")])
            print(f"{name:<16} {measure:<11} {old:7.2f} {new:7.2f} {old / new:8.2f}")


if __name__ == "__main__":
    main()
