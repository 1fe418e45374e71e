"""``visiontasks export --ckpt_path X --format onnx|torchscript|torch_export [--dynamic] [--output F]``:
a checkpoint as a file that runs without visiontasks (uint8 image in, normalisation inside), with a
JSON description beside it (``F.json``). See docs/reuse.md, "Export"."""

from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="visiontasks export",
        description="Export a checkpoint (any task) to a file that takes uint8 [N, H, W, C] images and normalises "
                    "inside, with a JSON beside it (class names, input size, what the caller does first, outputs).")
    parser.add_argument("--ckpt_path", required=True, help="a .ckpt of any visiontasks task")
    parser.add_argument("--format", default="onnx", choices=["onnx", "torchscript", "torch_export"],
                        help="onnx (default; opset --opset), torchscript (torch.jit.trace) or torch_export (.pt2)")
    parser.add_argument("--output", default=None,
                        help="the file to write (default: beside the checkpoint, .onnx/.torchscript/.pt2)")
    parser.add_argument("--dynamic", action="store_true", default=None,
                        help="accept any input height/width (default: on when the data does not resize to one "
                             "size, e.g. segmentation)")
    parser.add_argument("--image_size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="export at this input size (default: the size the checkpoint's data resizes to)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 11)")
    args = parser.parse_args(argv)

    from visiontasks.export import export_checkpoint

    done = export_checkpoint(args.ckpt_path, args.format, args.output, args.dynamic,
                             tuple(args.image_size) if args.image_size else None, args.opset)
    spec = done.spec
    size = "any H x W" if spec["input"]["dynamic_size"] else "x".join(map(str, spec["input"]["size"]))
    outs = ", ".join(f"{o['name']} {o['shape']}" for o in spec["outputs"])
    print(f"{done.path}: {spec['task']} {spec['model']} as {args.format}; input image uint8 NHWC "
          f"{spec['input']['channels']} at {size}, batch: {spec['input']['batch']}; outputs {outs}")
    print(f"{done.json_path}: class names, preprocessing the caller does first, outputs")
    return 0
