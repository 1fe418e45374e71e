"""``visiontasks optimize-data --config X --output DIR_OR_URL``: the config's data (train, val and
test splits) written as Lightning litdata chunks of the decoded, shrunk samples with their
annotations, to a local folder or an object store (``s3://bucket/prefix``); train from them with
``--data.init_args.streaming DIR_OR_URL``. See docs/streaming.md and :mod:`visiontasks.data.streaming`."""

from __future__ import annotations

import argparse
import time


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="visiontasks optimize-data", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="the YAML config of fit (its data section is read as fit reads it)")
    p.add_argument("--output", required=True, help="a folder or object-store URL (s3://..., gs://...) for the chunks")
    p.add_argument("--workers", type=int, default=None, help="processes decoding images (default: all cores)")
    p.add_argument("--chunk-bytes", default="64MB", help="the size of each chunk file (litdata's chunk_bytes)")
    p.epilog = "Settings of the config can be changed as with fit: --data.init_args.root DIR (values are read as YAML)."
    return p


def main(argv: list[str] | None = None) -> int:
    args, extra = _parser().parse_known_args(argv)
    from visiontasks.commands.check import apply_overrides, build_datamodule, load_config
    from visiontasks.data.cache import available_cpus

    cfg = apply_overrides(load_config(args.config), extra)
    data = cfg["data"]
    if isinstance(data.get("init_args"), dict):
        data["init_args"].pop("streaming", None)  # the files are what is written
    dm = build_datamodule(data, args.config)
    start = time.perf_counter()
    splits = dm.write_streams(args.output, args.workers or available_cpus(), args.chunk_bytes)
    print(f"{args.output}: litdata chunks of {', '.join(splits)} ({type(dm).__name__}, {len(dm.class_names)} classes) "
          f"in {time.perf_counter() - start:.1f} s; train from them with --data.init_args.streaming {args.output}")
    return 0
