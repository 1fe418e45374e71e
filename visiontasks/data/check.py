"""The data set doctor's core: problems found in the files, one job per image, run on all cores.

A datamodule's ``check_plan()`` lists what to read (a :class:`CheckPlan`: one job per image, with its
annotation, mask or label, plus the problems its reader found in the annotation files);
:func:`run_check` runs the jobs in a process pool with a progress bar and gathers every problem,
instead of stopping at the first, into a :class:`CheckReport` with the per-image facts the
statistics are made of. Nothing here knows of models (``visiontasks check`` adds the anchors).

Severity: ``error`` means training would fail (or read nothing); ``warning`` means it runs, but the
data is probably not what was meant (boxes clipped, a duplicate across splits, a placeholder GIF).
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Protocol, Sequence

import numpy as np

from visiontasks.errors import InvalidInputError, UserInputError

Severity = Literal["error", "warning"]


@dataclass
class Problem:
    """One thing wrong: where (file, 1-based line when the format has lines), what, and what to do."""

    severity: Severity
    file: str
    what: str
    todo: str = ""
    line: int | None = None
    split: str = ""

    def __str__(self) -> str:
        where = f"{self.file}, line {self.line}" if self.line is not None else self.file
        todo = f"; {self.todo}" if self.todo else ""
        split = f"[{self.split}] " if self.split else ""
        return f"{self.severity}: {split}{where}: {self.what}{todo}"


@dataclass
class SampleInfo:
    """What one job found out about one image (the statistics are made of these).

    ``size``: (H, W) of the decoded file (``None`` when unreadable); ``digest``: SHA-1 of the file's
    bytes; ``format``: PIL's format name (``JPEG``, ``GIF``); ``label``: the class (classification);
    ``boxes``: float32 [K, 4] xyxy in file pixels and ``labels`` int64 [K] (detection);
    ``mask_counts``: int64 [num_classes + 1] pixels per class, the last entry ignored pixels
    (segmentation).
    """

    split: str
    path: str
    size: tuple[int, int] | None = None
    digest: str | None = None
    format: str | None = None
    label: int | None = None
    boxes: np.ndarray | None = None
    labels: np.ndarray | None = None
    mask_counts: np.ndarray | None = None
    problems: list[Problem] = field(default_factory=list)

    def problem(self, severity: Severity, what: str, todo: str = "", file: str | None = None,
                line: int | None = None) -> None:
        self.problems.append(Problem(severity, file or self.path, what, todo, line, self.split))


class CheckJob(Protocol):
    """One image's check, run in a worker process (so it must pickle): returns its facts."""

    def __call__(self) -> SampleInfo: ...


def read_checked(info: SampleInfo, channels: int = 3) -> np.ndarray | None:
    """Decode ``info.path`` fully with the package's reader (``uint8 [H, W, C]``), filling ``size``,
    ``digest`` and ``format``; an unreadable file becomes an error in ``info`` and ``None``."""
    from PIL import Image

    from visiontasks.data.io import read_image

    path = Path(info.path)
    try:
        data = path.read_bytes()
    except OSError as err:
        info.problem("error", f"cannot read the file ({err.strerror or err})",
                     "fix the path or remove the entry that names it")
        return None
    info.digest = hashlib.sha1(data).hexdigest()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            image = read_image(path, channels)
        for w in caught:
            info.problem("warning", str(w.message).replace(f"{path}: ", ""))
        with Image.open(path) as img:
            info.format = img.format
    except UserInputError as err:
        what = str(err).replace(f"cannot read image {path}: ", "")
        info.problem("error", f"cannot decode the image ({what})",
                     "replace or delete the file (truncated, corrupt or not an image)")
        return None
    info.size = (int(image.shape[0]), int(image.shape[1]))
    return image


@dataclass
class ImageJob:
    """Decode one image (classification: with its class index)."""

    split: str
    path: str
    label: int | None = None

    def __call__(self) -> SampleInfo:
        info = SampleInfo(self.split, self.path, label=self.label)
        read_checked(info)
        return info


@dataclass
class CheckPlan:
    """What a datamodule hands to :func:`run_check`.

    ``task``: ``classification``, ``detection`` or ``segmentation``; ``jobs``: one per image;
    ``samples``: facts already known without reading files (in-memory data sets);
    ``problems``: found while reading the annotation files and folders; ``splits``: the configured
    splits (an empty ``train`` or ``val`` is an error); ``ignore_index``: the masks' ignore value.
    """

    task: str
    class_names: list[str]
    jobs: list[CheckJob] = field(default_factory=list)
    samples: list[SampleInfo] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    ignore_index: int | None = None
    splits: list[str] = field(default_factory=list)


@dataclass
class CheckReport:
    """Every problem and every image's facts."""

    task: str
    class_names: list[str]
    samples: list[SampleInfo]
    problems: list[Problem]
    splits: list[str]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        """No problem that stops training."""
        return not self.errors

    def by_split(self) -> dict[str, list[SampleInfo]]:
        out: dict[str, list[SampleInfo]] = {s: [] for s in self.splits}
        for s in self.samples:
            out.setdefault(s.split, []).append(s)
        return out

    def summary(self, limit: int = 10) -> str:
        """``N error(s)`` and the first ``limit`` of them, one per line (for an error message)."""
        errors = self.errors
        lines = [f"the data check found {len(errors)} problem(s) that stop training"
                 f" (and {len(self.warnings)} warning(s))"]
        lines += [f"  {p}" for p in errors[:limit]]
        if len(errors) > limit:
            lines.append(f"  ... and {len(errors) - limit} more (visiontasks check --config FILE lists all)")
        return "\n".join(lines)


def _run_one(job: CheckJob) -> SampleInfo:
    from PIL import Image

    try:
        return job()
    except (UserInputError, OSError, ValueError, Image.DecompressionBombError) as err:
        # a file the readers do not catch themselves (e.g. a decompression bomb): one error for it,
        # the other files are still read; anything else is a bug and keeps its traceback
        info = SampleInfo(getattr(job, "split", ""), str(getattr(job, "path", "?")))
        info.problem("error", f"{type(err).__name__}: {err}", "replace or delete the file")
        return info


def _map(jobs: Sequence[CheckJob], workers: int, progress: bool) -> list[SampleInfo]:
    """``[job() for job in jobs]`` on ``workers`` processes (0: here), in order, with a progress bar."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="checking", unit="img", disable=not progress, file=sys.stderr,
               dynamic_ncols=True)
    try:
        if workers <= 1 or len(jobs) <= 1:
            out = []
            for job in jobs:
                out.append(_run_one(job))
                bar.update()
            return out
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # fork: the jobs' classes are importable in the child at once (no re-import of the package)
        context = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else None)
        chunk = max(1, min(32, len(jobs) // (workers * 8)))
        out = []
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            for info in pool.map(_run_one, jobs, chunksize=chunk):
                out.append(info)
                bar.update()
        return out
    finally:
        bar.close()


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_check(plan: CheckPlan, workers: int | None = None, progress: bool = True) -> CheckReport:
    """Run every job of ``plan`` (on ``workers`` processes, default all cores), then the checks
    across images: duplicates between splits, rare file formats, empty splits."""
    workers = default_workers() if workers is None else workers
    samples = list(plan.samples) + _map(plan.jobs, workers, progress)
    problems = list(plan.problems)
    for s in samples:
        problems += s.problems
    problems += duplicates(samples) + rare_formats(samples)
    counts = Counter(s.split for s in samples)
    for split in plan.splits:
        if not counts.get(split) and not any(p.split == split and p.severity == "error" for p in problems):
            # training needs train and val; an empty test or predict split only fails its own command
            severity: Severity = "error" if split in ("train", "val") else "warning"
            problems.append(Problem(severity, split, "the split has no images", "add images or fix its path",
                                    split=split))
    return CheckReport(plan.task, plan.class_names, samples, problems, list(plan.splits))


def duplicates(samples: Iterable[SampleInfo]) -> list[Problem]:
    """A warning for every file whose bytes also occur in another split (the model is then scored on
    what it trained on), and one for identical files within a split."""
    by_digest: dict[str, list[SampleInfo]] = defaultdict(list)
    for s in samples:
        if s.digest:
            by_digest[s.digest].append(s)
    out = []
    for group in by_digest.values():
        if len(group) < 2:
            continue
        if len({s.split for s in group}) > 1:
            first = group[0]
            for other in group[1:]:
                if other.split != first.split:
                    out.append(Problem("warning", other.path,
                                       f"the same file (SHA-1) is in split {first.split!r} as {first.path}",
                                       "remove it from one of the splits", split=other.split))
        elif len({s.path for s in group}) > 1:
            out.append(Problem("warning", group[1].path, f"identical to {group[0].path} in the same split",
                               "remove the copy", split=group[1].split))
    return out


def rare_formats(samples: Sequence[SampleInfo], share: float = 0.05) -> list[Problem]:
    """A warning for each image whose file format is rare in the data set (under ``share`` of the
    files, at least a single one, e.g. one GIF among JPEG photos: often a placeholder such as "image
    not found")."""
    formats = Counter(s.format for s in samples if s.format)
    total = sum(formats.values())
    if len(formats) < 2:
        return []
    common = formats.most_common(1)[0][0]
    return [Problem("warning", s.path, f"a {s.format} file among {formats[common]} {common} files",
                    "check that it is a real picture of the data (placeholders are often GIFs)", split=s.split)
            for s in samples if s.format and s.format != common and formats[s.format] <= max(1.0, share * total)]


def collect(fn: Callable[[], Any], where: str, split: str = "", todo: str = "") -> tuple[Any, list[Problem]]:
    """``fn()`` and the problems it raised or warned: a user error (a reader's "this file is wrong",
    also as ``FileNotFoundError``/``ValueError``/``OSError``, which the readers raise for missing or
    wrong files and settings) becomes one error at ``where``; each warning one warning. Other
    exceptions (bugs) still raise."""
    problems: list[Problem] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = fn()
        except (UserInputError, FileNotFoundError, ValueError, OSError) as err:
            problems.append(Problem("error", where, str(err).strip(), todo, split=split))
            result = None
    for w in caught:
        if issubclass(w.category, UserWarning) and not str(w.message).startswith(("torch", "Lightning")):
            problems.append(Problem("warning", where, str(w.message), split=split))
    return result, problems


class DataCheckError(InvalidInputError):
    """The data check before training found problems that would stop it."""


def check_or_raise(plan_fn: Callable[[], CheckPlan], workers: int | None = None) -> CheckReport:
    """Run the check of ``plan_fn()`` (progress bar on global rank 0 only) and raise
    :class:`DataCheckError` listing the count and the first problems when training would fail."""
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0)
    if workers is None:  # the ranks of one machine share its cores
        workers = max(1, default_workers() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)))
    report = run_check(plan_fn(), workers, progress=rank == 0)
    if not report.ok:
        raise DataCheckError(report.summary())
    return report
