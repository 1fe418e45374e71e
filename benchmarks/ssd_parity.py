"""Speed parity: our ``ssd`` (VGG-16, torchvision's SSD300 settings) against torchvision's ``ssd300_vgg16``.

Both models are randomly initialised, then torchvision's weights are copied into ours (the same
architecture; keys renamed by ``visiontasks.heads.detector_weights.ssd_renamed``), so both do exactly
the same work and the script also checks that they compute the same thing. They get the same
300 x 300 images, already normalised (our data pipeline normalises, so torchvision's transform is
given mean 0 / std 1; its resize to 300 is then a scale-1 no-op) and the same targets. Training step
(forward + backward + SGD step) and inference (``no_grad`` forward) are timed alternately in one
process (ours, torchvision, torchvision, ours, ...: the order flips every repetition) after a warm-up;
medians are reported with the ratio ours / torchvision (goal: <= 1.05), and the ratio of the fastest
runs (the least disturbed ones on a shared machine).

    python benchmarks/ssd_parity.py --batch 2 --repeats 7 [--threads 1] [--device cuda] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable

import torch
from torch import nn
from torchvision.models.detection import ssd300_vgg16

import visiontasks  # noqa: F401
from visiontasks.backbones import build_backbone
from visiontasks.heads.detector import build_detector
from visiontasks.heads.detector_weights import ssd_renamed
from visiontasks.heads.ssd import TORCHVISION_SSD300

SIZE = 300


def build_pair(num_classes: int, device: torch.device) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    tv = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=num_classes + 1,
                      image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0])
    ours = build_detector("ssd", build_backbone("vgg16"), num_classes, **TORCHVISION_SSD300)
    ours.load_state_dict(ssd_renamed(tv.state_dict()), strict=True)
    return ours.to(device), tv.to(device)


def make_batch(batch: int, num_classes: int, device: torch.device):
    g = torch.Generator().manual_seed(1)
    images = [torch.randn(3, SIZE, SIZE, generator=g).to(device) for _ in range(batch)]
    targets = []
    for _ in range(batch):
        xy = torch.rand(4, 2, generator=g) * SIZE * 0.6
        wh = 16 + torch.rand(4, 2, generator=g) * SIZE * 0.35
        boxes = torch.cat([xy, (xy + wh).clamp(max=SIZE)], 1)
        labels = torch.randint(0, num_classes, (4,), generator=g)
        targets.append({"boxes": boxes.to(device), "labels": labels.to(device)})
    return images, targets


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], None], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--classes", type=int, default=90)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ours, tv = build_pair(args.classes, device)
    images, targets = make_batch(args.batch, args.classes, device)
    tv_targets = [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets]  # tv: 0 = background

    # same weights, same inputs: the same detections (a check that the timing compares like with like)
    ours.eval(), tv.eval()
    with torch.no_grad():
        a, b = ours(images), tv(images)
    diff = max(float((x["boxes"] - y["boxes"]).abs().max()) if len(x["boxes"]) == len(y["boxes"]) and len(x["boxes"])
               else (0.0 if len(x["boxes"]) == len(y["boxes"]) else float("inf")) for x, y in zip(a, b))
    same_labels = all(torch.equal(x["labels"] + 1, y["labels"]) for x, y in zip(a, b))

    opt_o = torch.optim.SGD(ours.parameters(), lr=1e-4, momentum=0.9)
    opt_t = torch.optim.SGD(tv.parameters(), lr=1e-4, momentum=0.9)

    def train_step(model: nn.Module, opt: torch.optim.Optimizer, tg: list[dict]) -> Callable[[], None]:
        def run() -> None:
            model.train()
            loss = sum(model(images, tg).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return run

    def infer(model: nn.Module) -> Callable[[], None]:
        def run() -> None:
            model.eval()
            with torch.no_grad():
                model(images)
        return run

    results: dict[str, dict[str, float]] = {}
    for phase, fo, ft in (
        ("train_step", train_step(ours, opt_o, targets), train_step(tv, opt_t, tv_targets)),
        ("inference", infer(ours), infer(tv)),
    ):
        fo(), ft()  # warm-up
        to, tt = [], []
        for rep in range(args.repeats):  # alternate, and flip the order every repetition
            if rep % 2 == 0:
                to.append(timed(fo, device))
                tt.append(timed(ft, device))
            else:
                tt.append(timed(ft, device))
                to.append(timed(fo, device))
        mo, mt = statistics.median(to), statistics.median(tt)
        results[phase] = {"ours_s": mo, "torchvision_s": mt, "ratio": mo / mt,
                          "ratio_of_minima": min(to) / min(tt), "ours_all_s": to, "torchvision_all_s": tt}
    report = {
        "device": str(device), "threads": torch.get_num_threads(), "image_size": SIZE,
        "batch": args.batch, "repeats": args.repeats, "max_box_diff_px": diff,
        "same_labels": same_labels, **results,
    }
    print(f"ssd parity on {device} ({torch.get_num_threads()} threads), batch {args.batch} x {SIZE}px, "
          f"median of {args.repeats}; same weights -> max box difference {diff:.2e} px, labels equal: {same_labels}")
    for phase, r in results.items():
        print(f"  {phase:10s}  ours {r['ours_s'] * 1e3:8.1f} ms   torchvision {r['torchvision_s'] * 1e3:8.1f} ms"
              f"   ratio ours/torchvision {r['ratio']:.3f} (of the fastest runs: {r['ratio_of_minima']:.3f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
