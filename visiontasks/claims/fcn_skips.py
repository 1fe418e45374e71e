"""FCN-32s vs 16s vs 8s: does fusing earlier, finer maps recover small objects and boundaries that
the stride-32 output loses? Trained here on generated shapes scenes, same steps, same init."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ._registry import Budget, ClaimResult, claim, verdict_of
from ._train import ClaimSize, Data, curve, device_for, fit, one_thread, seeded

VARIANTS = ("fcn32s", "fcn16s", "fcn8s")
IGNORE = 255
BAND = 2  # boundary band: pixels within 2 px of a change of class in the ground truth


@dataclass(frozen=True)
class Size(ClaimSize):
    n_val: int = 400
    small_area: int = 150  # px: a visible object below this counts as small (at 64 px: radius under ~7)
    lr: float = 0.01


# width 0: not used, the network is the registered ResNet-18 + FCN head at its own widths
SIZES = {"tiny": Size(0, 32, 16, 3, n_val=8, small_area=40), "small": Size(0, 64, 2000, 300),
         "full": Size(0, 128, 10000, 3000, n_val=1000, small_area=600)}


def scenes(n: int, side: int, seed: int) -> tuple[Tensor, Tensor, list[list[np.ndarray]]]:
    """``n`` generated scenes (``data.shapes.render_scene``, 3 shape classes, 1-4 objects of radius
    6-30 % of the side): normalised images ``[n, 3, side, side]``, class maps ``[n, side, side]``
    (0 background, shape class + 1) and each scene's visible object masks."""
    from visiontasks.data.shapes import render_scene

    rng = np.random.default_rng(seed)
    images, labels, objects = [], [], []
    for _ in range(n):
        image, instances = render_scene(rng, side, side, 3, size_range=(0.06, 0.3))
        label = np.zeros((side, side), np.int64)
        for inst in instances:  # later shapes are on top; masks are what remains visible
            label[inst.mask] = inst.label + 1
        images.append(image)
        labels.append(label)
        objects.append([inst.mask for inst in instances])
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    return (x - 0.5) / 0.25, torch.from_numpy(np.stack(labels)), objects


def boundary_band(y: Tensor, width: int = BAND) -> Tensor:
    """``bool [N, H, W]``: pixels within ``width`` px of a change of class in ``y``."""
    k = 2 * width + 1
    f = y[:, None].float()
    return (nn.functional.max_pool2d(f, k, 1, width) != -nn.functional.max_pool2d(-f, k, 1, width))[:, 0]


def miou(pred: Tensor, y: Tensor, classes: int) -> float:
    """The package's mIoU (:class:`~visiontasks.metrics.SegmentationMetrics`: one confusion matrix
    over all images, ``IGNORE`` pixels left out) of class maps ``pred`` against ``y``."""
    from visiontasks.metrics.segmentation import SegmentationMetrics

    metric = SegmentationMetrics(classes, ignore_index=IGNORE)
    metric.update(pred, y)
    return float(metric.compute()["mIoU"])


def small_object_recall(pred: Tensor, y: Tensor, objects: list[list[np.ndarray]], small_area: int) -> tuple[float, int]:
    """Mean fraction of each small object's visible pixels labelled with its class, and how many there were."""
    fractions = []
    for i, masks in enumerate(objects):
        for mask in masks:
            area = int(mask.sum())
            if 0 < area < small_area:
                m = torch.from_numpy(mask)
                fractions.append(float((pred[i][m] == y[i][m]).float().mean()))
    return (float(np.mean(fractions)) if fractions else float("nan")), len(fractions)


@claim("fcn_skips", kind="training")  # not training_claim: that one would also build the classification set
def fcn_skips(budget: Budget) -> ClaimResult:
    """Convolution summarises its input, so an object taking a small part of the image is lost by the output
    layer; deconvolution back to a larger map recovers it. FCN: the stride-32 output upsampled alone (FCN-32s)
    is coarse; fusing the stride-16 and stride-8 maps (FCN-16s, FCN-8s) recovers finer structure.

    Measures: mIoU, boundary mIoU (pixels within 2 px of a change of class) and the mean recall of small objects
    (visible area under 150 px at 64 px) on 400 held-out generated shapes scenes, of the package's fcn32s,
    fcn16s and fcn8s heads on the same ResNet-18 (no fc6/fc7, fixed bilinear final upsampling),
    trained from the same initialisation with the same 300 SGD steps (batch 16, lr 0.01, momentum 0.9) on
    2,000 scenes of 64 px
    Paper: Long, Shelhamer & Darrell 2015, Table 2 (mean IU 59.4 / 62.4 / 62.7 for 32s / 16s / 8s) and Fig. 4
    Notes: seeds/003_cd3e64e9312e8605.txt:40-45, seeds/000_4943f345b6f0fdd0.txt:209-222
    """
    from visiontasks.backbones import build_backbone
    from visiontasks.heads.fcn import FCN, FCNHead

    s, device = SIZES[budget], device_for(budget)
    x, y, _ = scenes(s.n_train, s.image, seed=0)
    vx, vy, objects = scenes(s.n_val, s.image, seed=10_000)
    seg = Data(x.to(device), y.to(device), vx.to(device), vy.to(device))
    band = boundary_band(vy)
    rows, runs, scores = [], {}, {}
    for variant in VARIANTS:
        def make() -> nn.Module:
            body = build_backbone("resnet18")
            return FCN(body, FCNHead(body.feature_info, 4, variant, fc_channels=0, dropout=0.0))

        with one_thread():
            net = seeded(0, make, seg)
            runs[variant] = run = fit(net, seg, s.steps, s.lr, batch=16, eval_every=s.steps, eval_n=16)
            net.eval()
            with torch.no_grad():
                pred = torch.cat([net(vx[i:i + 50].to(device)).argmax(1).cpu() for i in range(0, len(vx), 50)])
        recall, n_small = small_object_recall(pred, vy, objects, s.small_area)
        scores[variant] = (miou(pred, vy, 4), miou(pred, torch.where(band, vy, IGNORE), 4), recall)
        rows.append({"head": variant, "final train loss": round(run.final_loss(), 4),
                     "val mIoU": round(scores[variant][0], 3), "boundary mIoU": round(scores[variant][1], 3),
                     f"small-object recall ({n_small} objects)": round(recall, 3)})
    coarse, fine = scores["fcn32s"], scores["fcn8s"]
    checks = [fine[0] > coarse[0], fine[1] > coarse[1], fine[2] > coarse[2]]  # ties (nothing learned) do not agree
    finding = (f"mIoU 32s/16s/8s {' / '.join(f'{scores[v][0]:.3f}' for v in VARIANTS)}; boundary mIoU "
               f"{' / '.join(f'{scores[v][1]:.3f}' for v in VARIANTS)}; small-object recall "
               f"{' / '.join(f'{scores[v][2]:.3f}' for v in VARIANTS)}; FCN-8s above FCN-32s on mIoU, "
               f"boundary, small objects: {checks}")
    return ClaimResult(rows, verdict_of(checks), finding, {"training loss": {v: curve(runs[v]) for v in VARIANTS}})
