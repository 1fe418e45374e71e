"""``visiontasks proposals --config FILE``: precompute the selective-search proposal cache of every
split the config's ``data`` section names (the same YAML ``fit`` uses), on all CPU cores with a
progress bar, then report proposal recall at IoU 0.5 and 0.7 (and the mean best overlap) per split.

The config is read by jsonargparse, as ``visiontasks fit`` reads it: ``data`` is validated as a
``DetectionDataModule`` class_path/init_args (an unknown key or a wrong type stops with jsonargparse's
error naming it); the ``model``, ``trainer`` and ``seed_everything`` sections are accepted and ignored.

Training computes missing caches by itself; this command does it ahead of time (e.g. before a DDP
run) and tells how good the proposals are: recall bounds the recall any R-CNN / Fast R-CNN can reach.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from visiontasks.data.proposals import proposal_recall
from visiontasks.errors import InvalidInputError


def build_parser() -> ArgumentParser:
    """The command line and the schema of the config (the ``data`` section of a fit YAML)."""
    from visiontasks.data import DetectionDataModule

    parser = ArgumentParser(
        prog="visiontasks proposals",
        description="Precompute cached selective-search proposals for the splits of a config's data "
        "section and report their recall.",
    )
    parser.add_argument("--config", "-c", action=ActionConfigFile,
                        help="the YAML used for fit (its data section)")
    parser.add_subclass_arguments(DetectionDataModule, "data", required=True,
                                  help="the data module whose proposal caches are filled")
    for ignored in ("model", "trainer"):
        parser.add_argument(f"--{ignored}", type=dict[str, Any] | None, default=None,
                            help="accepted (a fit config has it) and ignored")
    parser.add_argument("--seed_everything", type=int | bool | None, default=None, help="ignored")
    parser.add_argument("--splits", type=str, nargs="+", default=None,
                        help="splits to process (default: every split the datamodule has: train, val, test)")
    parser.add_argument("--iou", type=float, nargs="+", default=[0.5, 0.7], help="recall IoU thresholds")
    parser.add_argument("--top_k", "--top-k", type=int, nargs="+", default=[100, 500],
                        help="also report recall@0.5 of each image's best-ranked K proposals")
    parser.add_argument("--processes", type=int | None, default=None,
                        help="worker processes (default: all CPUs)")
    parser.add_argument("--no_recall", "--no-recall", action="store_true", help="only fill the caches")
    parser.add_argument("--json", type=str | None, default=None, help="also write the numbers to this JSON file")
    return parser


def _build_datamodule(parser: ArgumentParser, cfg: Namespace) -> Any:
    """The data module of ``cfg.data``, with ``cfg.processes`` (when given) as the proposal workers."""
    proposals = cfg.data.init_args.get("proposals")
    if not proposals:
        raise InvalidInputError(
            "the config's data.init_args has no proposals section; add e.g. "
            "`proposals: {mode: fast, max_boxes: 2000}` (the R-CNN / Fast R-CNN configs have one)"
        )
    cfg = cfg.clone()
    if cfg.processes is not None:
        cfg.data.init_args.proposals = {**proposals, "processes": cfg.processes}
    return parser.instantiate(cfg).data


def _table(rows: list[dict[str, Any]], thresholds: list[float], top_k: list[int]) -> str:
    head = ["split", "images", "GT boxes", "proposals/img"] + [f"recall@{t:g}" for t in thresholds] + ["ABO"]
    head += [f"recall@0.5 top{k}" for k in top_k]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["split"], str(r["num_images"]), str(r["num_gt"]), f"{r['mean_proposals']:.1f}"]
        cells += [f"{r[f'recall@{t:g}']:.3f}" for t in thresholds] + [f"{r['abo']:.3f}"]
        cells += [f"{r[f'top{k}']['recall@0.5']:.3f}" for k in top_k]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        dm = _build_datamodule(parser, args)
        dm.prepare_data()
        for stage in ("fit", "test"):
            try:
                dm.setup(stage)
            except ValueError as err:  # a stage without its split (e.g. no test split configured)
                if "needs the" not in str(err):
                    raise
    except (OSError, ValueError) as err:
        print(f"visiontasks proposals: {err}", file=sys.stderr)
        return 2
    splits = args.splits or [s for s in ("train", "val", "test") if s in dm.datasets]
    missing = [s for s in splits if s not in dm.datasets]
    if missing:
        print(f"visiontasks proposals: split(s) {missing} not configured; have {sorted(dm.datasets)}",
              file=sys.stderr)
        return 2
    rows = []
    for split in splits:
        cache = dm.datasets[split].proposal_source
        print(f"{split}: {len(cache)} images, cache {cache.path}", file=sys.stderr)
        if args.no_recall:
            continue
        records = dm.splits[split].records
        props = [cache(r.path) for r in records]
        gts = [r.boxes for r in records]
        row = {"split": split, **proposal_recall(props, gts, args.iou)}
        for k in args.top_k:
            row[f"top{k}"] = proposal_recall(props, gts, args.iou, top_k=k)
        rows.append(row)
    if rows:
        print(_table(rows, args.iou, args.top_k))
    if args.json is not None:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
