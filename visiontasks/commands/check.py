"""``visiontasks check --config FILE``: a data set doctor.

Builds the config's datamodule (the ``data`` section, as ``fit`` would; no model, no Trainer), reads
every image, mask and annotation of every split on all cores (:mod:`visiontasks.data.check`), prints
every problem at once (file, line, what, what to do) and statistics, and writes plots (PNG) to an
output folder. For detection it compares the box sizes and shapes, in model-input pixels, with the
configured model's anchors (Faster R-CNN) or grid (YOLOv1).

Exit status 2 when training would fail (any error), 0 otherwise (warnings allowed).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from visiontasks.configs import load_value, read_config
from visiontasks.errors import InvalidInputError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="visiontasks check", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="the YAML config of fit (its data and model sections)")
    p.add_argument("--output", default=None, help="folder for the plots and problems.txt "
                   "(default: runs/check/<config name>)")
    p.add_argument("--workers", type=int, default=None, help="processes reading files (default: all cores)")
    p.add_argument("--max-print", type=int, default=0,
                   help="print at most this many problems of each severity (0: all; problems.txt has all)")
    p.add_argument("--no-plots", action="store_true", help="print the statistics only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.epilog = ("Settings of the config can be changed as with fit: --data.init_args.root DIR, "
                "--model.init_args.model_kwargs.grid_size 14 (values are read as YAML).")
    return p


def apply_overrides(cfg: dict[str, Any], extra: list[str]) -> dict[str, Any]:
    """``--a.b.c VALUE`` / ``--a.b.c=VALUE`` pairs (values parsed as YAML) set into ``cfg``."""
    i = 0
    while i < len(extra):
        arg = extra[i]
        if not arg.startswith("--") or arg == "--":
            raise InvalidInputError(f"unexpected argument {arg!r}; settings are given as --data.init_args.NAME VALUE")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(extra):
                raise InvalidInputError(f"{arg} needs a value")
            value, i = extra[i + 1], i + 1
        node = cfg
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InvalidInputError(f"{arg}: {part} is not a section of the config")
        node[last] = load_value(value, arg)
        i += 1
    return cfg


# -- the datamodule from the config ------------------------------------------------------------------------
def load_config(path: str) -> dict[str, Any]:
    """The config at ``path`` (:func:`visiontasks.configs.read_config`, as fit reads it), which must
    have a ``data:`` section."""
    cfg = read_config(path)
    if not isinstance(cfg.get("data"), dict):
        raise InvalidInputError(
            f"{Path(path)}: no 'data:' section with class_path and init_args (the layout of fit's config)")
    return cfg


def build_datamodule(data: dict[str, Any], where: str) -> Any:
    """The datamodule of a config's ``data`` section, instantiated by jsonargparse as LightningCLI
    does (class_path + init_args, types checked), without a model or Trainer."""
    from jsonargparse import ArgumentParser
    from lightning.pytorch import LightningDataModule

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningDataModule, "data", required=True)
    try:
        cfg = parser.parse_object({"data": data})
        return parser.instantiate_classes(cfg).data
    except Exception as err:
        from visiontasks.errors import find_user_error

        if find_user_error(err) is not None:
            raise
        cause: BaseException = err  # jsonargparse wraps the real reason ("Option 'rooot' is not accepted")
        while (cause.__cause__ or cause.__context__) is not None:
            cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise InvalidInputError(f"{where}: the data section does not build: {reason}") from err


# -- what the model expects -------------------------------------------------------------------------------
def model_priors(model: dict[str, Any] | None) -> dict[str, Any]:
    """The configured detector's box priors (its class's ``box_priors``, read from the config only:
    :func:`visiontasks.heads.detector.detector_priors`): ``{"kind": "anchors", "boxes": [(w, h), ...],
    ...}`` (model-input pixels), ``{"kind": "grid", "S": 7}``, ``{"kind": "none"}``; ``{}`` without a model."""
    args = (model or {}).get("init_args") or {}
    name = str(args.get("model", ""))
    if not name:
        return {}
    from visiontasks.heads.detector import detector_priors

    return detector_priors(name, args.get("model_kwargs") or {})


def shape_iou(wh: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """IoU of boxes ``[N, 2]`` (w, h) with priors ``[M, 2]`` placed at the same centre -> ``[N, M]``."""
    inter = np.minimum(wh[:, None, 0], priors[None, :, 0]) * np.minimum(wh[:, None, 1], priors[None, :, 1])
    union = wh[:, None].prod(-1) + priors[None].prod(-1) - inter
    return inter / np.maximum(union, 1e-9)


# -- statistics -------------------------------------------------------------------------------------------
def _q(values: np.ndarray) -> str:
    if values.size == 0:
        return "-"
    lo, med, hi = np.percentile(values, [0, 50, 100])
    return f"{lo:.0f} / {med:.0f} / {hi:.0f}"


def _size_lines(report: Any) -> list[str]:
    lines = []
    for split, samples in report.by_split().items():
        sizes = np.array([s.size for s in samples if s.size], float).reshape(-1, 2)
        n_bad = sum(1 for s in samples if s.size is None and s.digest is not None)
        lines.append(f"  {split:<8} {len(samples):>6} images  width min/median/max {_q(sizes[:, 1])}  "
                     f"height {_q(sizes[:, 0])}" + (f"  unreadable {n_bad}" if n_bad else ""))
    return lines


def _class_hist(report: Any) -> dict[str, Counter]:
    out: dict[str, Counter] = {}
    for split, samples in report.by_split().items():
        c: Counter = Counter()
        for s in samples:
            if s.label is not None:
                c[s.label] += 1
            if s.labels is not None:
                c.update(int(v) for v in s.labels)
        out[split] = c
    return out


def _name(report: Any, k: int) -> str:
    return report.class_names[k] if 0 <= k < len(report.class_names) else str(k)


def detection_stats(report: Any, dm: Any, priors: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """Lines to print and arrays to plot: boxes per image, box sizes/aspects in model-input pixels
    against the model's anchors or grid."""
    from visiontasks.preprocessing import Preprocessing

    prep = dm.preprocessing() if hasattr(dm, "preprocessing") else Preprocessing()
    lines, data = [], {}
    wh_all, per_image = [], {}
    centres_collide = 0
    for split, samples in report.by_split().items():
        read = [s for s in samples if s.boxes is not None and s.size]
        counts = np.array([len(s.boxes) for s in read], int)
        per_image[split] = counts
        if counts.size:
            empty = [Path(s.path).name for s in read if not len(s.boxes)]
            shown = f" ({', '.join(empty[:3])}{', ...' if len(empty) > 3 else ''})" if empty else ""
            lines.append(f"  {split:<8} boxes {int(counts.sum())}, per image mean {counts.mean():.1f} max "
                         f"{counts.max()}, background images (no boxes) {len(empty)}{shown}")
        for s in samples:
            if s.boxes is None or s.size is None or not len(s.boxes):
                continue
            sx, sy = prep.scale(s.size)
            b = s.boxes.astype(np.float64)
            wh_all.append(np.stack([(b[:, 2] - b[:, 0]) * sx, (b[:, 3] - b[:, 1]) * sy], 1))
            if priors.get("kind") == "grid":  # the cell of each box centre on the S x S input grid
                S = priors["S"]
                ch, cw = prep.canvas(s.size)
                ox, oy = (cw - s.size[1] * sx) / 2, (ch - s.size[0] * sy) / 2  # letterbox centres the image
                cx = ((b[:, 0] + b[:, 2]) / 2 * sx + ox) / cw
                cy = ((b[:, 1] + b[:, 3]) / 2 * sy + oy) / ch
                cells = np.minimum((cy * S).astype(int), S - 1) * S + np.minimum((cx * S).astype(int), S - 1)
                centres_collide += len(cells) - len(set(cells.tolist()))
    wh = np.concatenate(wh_all) if wh_all else np.zeros((0, 2))
    data["per_image"], data["wh"] = per_image, wh
    if len(wh):
        side, aspect = np.sqrt(wh.prod(1)), wh[:, 1] / np.maximum(wh[:, 0], 1e-9)
        scale = f"{getattr(dm, 'resize', 'none')} to {getattr(dm, 'image_size', None)}"
        lines.append(f"  box side sqrt(w*h) in model-input pixels ({scale}): min/median/max {_q(side)}; "
                     f"aspect h/w 5%/50%/95% {np.percentile(aspect, 5):.2f} / {np.median(aspect):.2f} / "
                     f"{np.percentile(aspect, 95):.2f}")
    if priors.get("kind") == "anchors" and len(wh):
        iou = shape_iou(wh, np.array(priors["boxes"])).max(1)
        note = f" ({priors['note']})" if priors["note"] else ""
        lines.append(f"  {priors['name']} anchors: sizes {priors['sizes']} x ratios {priors['ratios']}{note}")
        lines.append(f"    best anchor-shape IoU >= 0.7 (an RPN positive): {np.mean(iou >= 0.7):.1%} of boxes; "
                     f"< 0.3 (only a positive as the best anchor for its box): {np.mean(iou < 0.3):.1%}; "
                     f"median {np.median(iou):.2f}")
        lines.append("    (shape IoU with the anchor centred on the box: an upper bound, real anchors sit on the "
                     "feature stride grid)")
        data["iou"] = iou
    elif priors.get("kind") == "grid":
        S = priors["S"]
        lines.append(f"  {priors['name']} grid {S}x{S}: {centres_collide} box(es) share a grid cell with an "
                     f"earlier box of the same image (YOLOv1 keeps one object per cell; these are not learned)")
    elif priors.get("kind") == "none":
        lines.append(f"  {priors['name']}: no anchors to compare with (proposals come from selective search)")
    return lines, data


def segmentation_stats(report: Any) -> tuple[list[str], np.ndarray]:
    k = len(report.class_names)
    total = np.zeros(k + 1, np.int64)
    for s in report.samples:
        if s.mask_counts is not None:
            total[: len(s.mask_counts)] += s.mask_counts
    share = total / max(total.sum(), 1)
    order = np.argsort(-share[:k])
    lines = [f"  ignored pixels {share[k]:.1%}; classes without any pixel: {int((total[:k] == 0).sum())} of {k}"]
    lines.append("  largest pixel shares: " + ", ".join(f"{_name(report, int(i))} {share[i]:.1%}"
                                                         for i in order[:8] if total[i]))
    return lines, share


# -- plots ------------------------------------------------------------------------------------------------
def write_plots(report: Any, out: Path, det: dict[str, Any] | None, priors: dict[str, Any],
                share: np.ndarray | None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        written.append(out / name)

    if any(s.size for s in report.samples):  # in-memory sets (digits, MNIST) have no files to size
        fig, ax = plt.subplots(figsize=(6, 5))
        for split, samples in report.by_split().items():
            sizes = np.array([s.size for s in samples if s.size], float).reshape(-1, 2)
            ax.scatter(sizes[:, 1], sizes[:, 0], s=8, alpha=0.6, label=f"{split} ({len(sizes)})")
        ax.set(xlabel="width (px)", ylabel="height (px)", title="image sizes")
        ax.legend()
        save(fig, "image_sizes.png")

    hist = _class_hist(report)
    if any(hist.values()):
        k = len(report.class_names)
        fig, ax = plt.subplots(figsize=(max(6, min(0.25 * k, 30)), 4))
        x = np.arange(k)
        width = 0.8 / max(len(hist), 1)
        for i, (split, c) in enumerate(hist.items()):
            ax.bar(x + i * width, [c.get(j, 0) for j in range(k)], width, label=split)
        ax.set_xticks(x + 0.4 - width / 2, report.class_names, rotation=90, fontsize=7 if k > 20 else 9)
        ax.set(ylabel="boxes" if report.task == "detection" else "images", title="class histogram")
        ax.legend()
        save(fig, "class_histogram.png")

    if det is not None:
        fig, ax = plt.subplots(figsize=(6, 4))
        for split, counts in det["per_image"].items():
            if counts.size:
                ax.hist(counts, bins=np.arange(counts.max() + 2) - 0.5, alpha=0.6, label=split)
        ax.set(xlabel="boxes per image", ylabel="images", title="boxes per image")
        ax.legend()
        save(fig, "boxes_per_image.png")
        wh = det["wh"]
        if len(wh):
            fig, ax = plt.subplots(figsize=(6, 5))
            ax.scatter(np.sqrt(wh.prod(1)), wh[:, 1] / np.maximum(wh[:, 0], 1e-9), s=6, alpha=0.5, label="boxes")
            if priors.get("kind") == "anchors":
                pb = np.array(priors["boxes"])
                ax.scatter(np.sqrt(pb.prod(1)), pb[:, 1] / pb[:, 0], marker="x", s=80, c="red", label="anchors")
            ax.set(xscale="log", yscale="log", xlabel="box side sqrt(w*h), model-input px",
                   ylabel="aspect h/w", title="box size and shape vs anchors")
            ax.legend()
            save(fig, "box_sizes.png")
    if share is not None:
        k = len(report.class_names)
        fig, ax = plt.subplots(figsize=(max(6, min(0.2 * k, 30)), 4))
        ax.bar(np.arange(k + 1), share * 100)
        ax.set_xticks(np.arange(k + 1), [*report.class_names, "ignored"], rotation=90, fontsize=6 if k > 30 else 9)
        ax.set(ylabel="% of pixels", title="mask pixel share per class")
        save(fig, "mask_pixel_share.png")
    return written


# -- the command ------------------------------------------------------------------------------------------
def _print_problems(problems: list[Any], limit: int) -> None:
    for severity in ("error", "warning"):
        found = [p for p in problems if p.severity == severity]
        shown = found if limit <= 0 else found[:limit]
        for p in shown:
            print(str(p))
        if len(found) > len(shown):
            print(f"... and {len(found) - len(shown)} more {severity}(s) (see problems.txt)")


def main(argv: list[str] | None = None) -> int:
    args, extra = _parser().parse_known_args(argv)
    start = time.perf_counter()
    cfg = apply_overrides(load_config(args.config), extra)
    dm = build_datamodule(cfg["data"], args.config)
    if not hasattr(dm, "check_plan"):
        raise InvalidInputError(f"{args.config}: {type(dm).__name__} has no data check (use a visiontasks datamodule)")
    from visiontasks.data.check import run_check

    from visiontasks.data.check import default_workers

    workers = args.workers if args.workers is not None else default_workers()
    read_start = time.perf_counter()
    plan = dm.check_plan()
    report = run_check(plan, workers, progress=not args.no_progress)
    read_s = time.perf_counter() - read_start
    out = Path(args.output) if args.output else Path("runs") / "check" / Path(args.config).stem
    out.mkdir(parents=True, exist_ok=True)
    (out / "problems.txt").write_text("".join(f"{p}\n" for p in report.problems))

    _print_problems(report.problems, args.max_print)
    print(f"\n{type(dm).__name__} ({report.task}), {len(report.class_names)} classes, "
          f"{len(report.samples)} images in splits {', '.join(report.splits)}")
    for line in _size_lines(report):
        print(line)
    det = share = None
    priors: dict[str, Any] = {}
    if report.task == "detection":
        priors = model_priors(cfg.get("model"))
        lines, det = detection_stats(report, dm, priors)
        print("\n".join(lines))
    if report.task == "segmentation":
        lines, share = segmentation_stats(report)
        print("\n".join(lines))
    hist = _class_hist(report)
    for split, c in hist.items():
        if c:
            top = ", ".join(f"{_name(report, k)} {n}" for k, n in c.most_common(6))
            missing = len(report.class_names) - len(c)
            print(f"  {split:<8} classes: {top}{' ...' if len(c) > 6 else ''}"
                  + (f"; {missing} class(es) absent" if missing > 0 else ""))
    if not args.no_plots:
        written = write_plots(report, out, det, priors, share)
        print(f"plots: {', '.join(p.name for p in written)} in {out}")
    print(f"problems: {len(report.errors)} error(s), {len(report.warnings)} warning(s) "
          f"(all in {out / 'problems.txt'}); "
          f"read in {read_s:.1f} s on {workers} process(es), {time.perf_counter() - start:.1f} s in all")
    if not report.ok:
        print("training would fail: fix the errors above", file=sys.stderr)
        return 2
    return 0
