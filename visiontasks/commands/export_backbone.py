"""``visiontasks export-backbone --ckpt_path X --output backbone.pth``: a checkpoint's backbone as a
state_dict in torchvision's layout.

The file holds the canonical model's keys minus its classifier head, so
``torchvision.models.<name>(weights=None).load_state_dict(sd, strict=False)`` gives the same
features as the task's backbone. Families torchvision lacks (lenet5, mobilenet_v1, nin, alexnet_lrn,
vgg*_lrn, vgg16_c) are written in visiontasks' canonical layout (``build_backbone(name, weights=FILE)``
loads either).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path


def main(argv: list[str]) -> int:
    import torch

    from visiontasks.backbones import checkpoint_backbone

    parser = argparse.ArgumentParser(prog="visiontasks export-backbone", description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt_path", required=True, help="a .ckpt of any visiontasks task")
    parser.add_argument("--output", required=True, help="the state_dict file to write (e.g. backbone.pth)")
    args = parser.parse_args(argv)
    with warnings.catch_warnings():  # the stages it lacks are said below
        warnings.simplefilter("ignore", UserWarning)
        found = checkpoint_backbone(args.ckpt_path)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(found.state, tmp)
    tmp.replace(out)
    layout = (f"torchvision's layout: torchvision.models.{found.name}(weights=None).load_state_dict(sd, strict=False)"
              if found.in_torchvision else
              f"visiontasks' canonical layout (torchvision has no {found.name}): "
              f"visiontasks.backbones.build_backbone('{found.name}', weights='{out}')")
    print(f"{out}: the {found.name} backbone of {args.ckpt_path} ({len(found.state)} tensors) in {layout}")
    if found.stages != found.all_stages:
        print(f"  it holds the stages {found.stages} only (the checkpoint's task did not use the deeper ones)")
    if found.in_torchvision and found.in_chans != 3:
        print(f"  its first convolution takes {found.in_chans} input channels (torchvision's takes 3: "
              "replace it before loading)")
    if found.transform_input:
        print("  trained with GoogLeNet's transform_input: set model.transform_input = True")
    return 0
