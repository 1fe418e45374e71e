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

``--phases`` times (c) in this tree alone, phase by phase, from probe lines the fit prints: launch ->
the probe module imported (interpreter, torch and Lightning imports, the config parsed up to the
callback's class path), -> the probe callback built (the rest of parsing; model, data and trainer
instantiated), -> its ``setup`` hook (the trainer's start, ``datamodule.setup``), -> ``on_train_start``
(loaders and caches, the optimizer, the sanity validation), -> the first training batch (its fetch).

    python benchmarks/startup.py --phases --rounds 3
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

PHASE_PROBE = '''
import time
print(f"PHASE imported {time.time():.6f}", flush=True)
from lightning.pytorch import Callback


class Phases(Callback):
    """Prints the wall-clock time of each start-up phase's end, once each."""

    def __init__(self) -> None:
        self.first = False
        print(f"PHASE built {time.time():.6f}", flush=True)

    def setup(self, trainer, pl_module, stage) -> None:
        print(f"PHASE setup {time.time():.6f}", flush=True)

    def on_train_start(self, trainer, pl_module) -> None:
        print(f"PHASE train_start {time.time():.6f}", flush=True)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.first:
            self.first = True
            print(f"PHASE first_batch {time.time():.6f}", flush=True)
'''
PHASES = {"imported": "imports + parse to the callback", "built": "rest of parse + instantiate",
          "setup": "trainer start + data setup", "train_start": "loaders, caches, optimizer, sanity val",
          "first_batch": "first batch fetched"}

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


def phases(tree: Path, rounds: int) -> None:
    """Median seconds of each start-up phase of the 1-step fit (see the module docstring)."""
    spans: dict[str, list[float]] = {k: [] for k in PHASES}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vt_phases.py").write_text(PHASE_PROBE)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), tmp]))
        args = ["fit", "--config", str(tree / CONFIG), "--trainer.max_steps", "1", "--trainer.enable_progress_bar",
                "false", "--trainer.callbacks+=vt_phases.Phases", f"--trainer.default_root_dir={tmp}/runs"]
        for _ in range(rounds):
            start = time.time()
            proc = subprocess.run([*_command(), *args], cwd=tmp, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"visiontasks {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
            ends = {k: float(t) for _, k, t in (line.split() for line in proc.stdout.splitlines() if line.startswith("PHASE "))}
            before = start
            for k in PHASES:
                spans[k].append(ends[k] - before)
                before = ends[k]
    print(f"start-up of the 1-step fit of {CONFIG}, medians of {rounds} runs (seconds)")
    for k, label in PHASES.items():
        print(f"{label:<40} {statistics.median(spans[k]):6.2f}")
    print(f"{'sum: launch to the first training batch':<40} {sum(statistics.median(v) for v in spans.values()):6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", type=Path, help="baseline source tree (its root); needed unless --phases")
    parser.add_argument("--new", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--phases", action="store_true", help="time the fit's start-up phases in --new alone")
    opts = parser.parse_args()
    if opts.phases:
        phases(opts.new.resolve(), opts.rounds)
        return
    if opts.old is None:
        parser.error("--old is needed unless --phases is given")

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
