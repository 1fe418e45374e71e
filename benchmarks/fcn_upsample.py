"""FCN's fixed final upsampling: depthwise (``groups=K``, what ``FCNHead`` uses) vs the full ``K -> K``
transposed convolution with a diagonal bilinear kernel (the reference implementation's layer).

Both compute the same output (checked here); the benchmark times the whole FCN-8s forward pass in
eval mode (ResNet-18 backbone, ``--classes`` classes, one ``--height`` x ``--width`` image), the two
variants alternated in one process, and prints the ratio of median times ``full / depthwise``
(> 1: the depthwise layer is faster).

    python benchmarks/fcn_upsample.py                                  # 129 classes (COCO128), 480x640
    python benchmarks/fcn_upsample.py --classes 21 --height 500 --width 500   # Pascal VOC size
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from visiontasks.heads.fcn import BilinearUpsample, bilinear_kernel
from visiontasks.tasks import SegmentationTask


def full_kernel_copy(up: BilinearUpsample) -> BilinearUpsample:
    """The same fixed upsampling as a full (``groups=1``) transposed convolution."""
    full = BilinearUpsample(up.in_channels, up.factor, learnable=True)
    with torch.no_grad():
        full.weight.copy_(bilinear_kernel(up.in_channels, 2 * up.factor))
    full.weight.requires_grad_(False)
    return full


def median_ms(model: nn.Module, x: torch.Tensor, repeats: int) -> list[float]:
    times = []
    with torch.inference_mode():
        model(x)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(1000 * (time.perf_counter() - start))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, default=129)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    task = SegmentationTask(model="fcn8s", backbone="resnet18", num_classes=args.classes,
                            fc_channels=512, fc_kernel_size=3).eval()
    depthwise = task.model
    full = copy.deepcopy(depthwise)
    full.head.up_final = full_kernel_copy(depthwise.head.up_final)
    x = torch.randn(1, 3, args.height, args.width)
    with torch.inference_mode():
        a, b = depthwise(x), full(x)
    assert torch.allclose(a, b, atol=1e-4), "depthwise and full upsampling disagree"
    times: dict[str, list[float]] = {"depthwise": [], "full": []}
    for _ in range(args.rounds):
        times["depthwise"] += median_ms(depthwise, x, args.repeats)
        times["full"] += median_ms(full, x, args.repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"FCN-8s ResNet-18, {args.classes} classes, {args.height}x{args.width}, "
          f"{torch.get_num_threads()} threads, median of {len(times['full'])} forwards:")
    print(f"  full K->K final upsampling   {med['full']:8.1f} ms")
    print(f"  depthwise final upsampling   {med['depthwise']:8.1f} ms")
    print(f"  ratio full / depthwise       {med['full'] / med['depthwise']:8.2f}")


if __name__ == "__main__":
    main()
