"""``visiontasks summary NAME``: a backbone's per-layer table and its totals.

Reading a model by its parameter count is the first skill the seeds teach; this prints, for the
backbone with its paper's classifier head, every layer's output shape and parameters, and the totals
(parameters, multiply-adds at the given input size), using torchinfo.
"""

from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    from torchinfo import summary

    from visiontasks.backbones import build_classifier, get_spec, list_backbones

    parser = argparse.ArgumentParser(prog="visiontasks summary", description=__doc__.split("\n")[0])
    parser.add_argument("name", help=f"one of: {', '.join(list_backbones())}")
    parser.add_argument("--num_classes", type=int, default=1000)
    parser.add_argument("--in_chans", type=int, default=None, help="default: the backbone's usual input")
    parser.add_argument("--input_size", type=int, nargs="+", default=None, help="H [W] (default: the paper's)")
    parser.add_argument("--depth", type=int, default=4, help="nesting depth of the table")
    parser.add_argument("--backbone_only", action="store_true", help="without the classifier head")
    args = parser.parse_args(argv)
    try:
        spec = get_spec(args.name)
    except ValueError as err:
        parser.error(str(err))
    in_chans = args.in_chans or spec.default_in_chans
    size = args.input_size or [spec.input_size]
    h, w = (size[0], size[0]) if len(size) == 1 else size[:2]
    model = build_classifier(args.name, args.num_classes, in_chans=in_chans).eval()
    target = model.backbone if args.backbone_only else model
    stats = summary(
        target,
        input_size=(1, in_chans, h, w),
        depth=args.depth,
        col_names=("output_size", "num_params", "mult_adds"),
        row_settings=("var_names",),
        verbose=0,
    )
    print(stats)
    madds = stats.total_mult_adds
    madds_text = f"{madds / 1e9:.2f} G" if madds >= 1e8 else f"{madds / 1e6:.3f} M"
    print(f"{args.name}: {stats.total_params:,} parameters, {madds_text} multiply-adds at {in_chans}x{h}x{w}")
    print("features: " + ", ".join(f"{f.name} ({f.channels} ch, stride {f.stride})" for f in model.backbone.feature_info))
    return 0
