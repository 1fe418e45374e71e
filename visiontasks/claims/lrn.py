"""LRN on/off in the package's AlexNet (``alexnet_lrn``, the paper's network with local response
normalisation after conv1 and conv2), and BatchNorm in its place."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ._registry import ClaimResult, verdict_of
from ._train import Data, curve, fit, learned, seeded, training_claim

NORMS = ("LRN (paper)", "none", "BatchNorm")


def alexnet_variant(norm: str, shrink: int = 1, num_classes: int = 10) -> nn.Module:
    """The registered ``alexnet_lrn`` (``AlexNetLRN``) with its two LocalResponseNorm layers kept
    (``"LRN (paper)"``), removed (``"none"``) or replaced by BatchNorm2d (``"BatchNorm"``); every other
    layer is the backbone's own. ``shrink`` > 1 divides every channel and FC width by it (same
    kernels, strides, groups and layer order) so that the small budget fits a CPU."""
    from visiontasks.backbones.alexnet import AlexNetLRN

    net = AlexNetLRN(num_classes)
    features, c = [], 3
    for m in net.features:
        if isinstance(m, nn.Conv2d):
            m = nn.Conv2d(c, m.out_channels // shrink, m.kernel_size, m.stride, m.padding, groups=m.groups) \
                if shrink > 1 else m
            c = m.out_channels
        elif isinstance(m, nn.LocalResponseNorm):
            m = {"LRN (paper)": m, "none": nn.Identity(), "BatchNorm": nn.BatchNorm2d(c)}[norm]
        features.append(m)
    net.features = nn.Sequential(*features)
    if shrink > 1:
        fc = [m for m in net.classifier if isinstance(m, nn.Linear)]
        widths = [c * 36] + [f.out_features // shrink for f in fc[:-1]] + [num_classes]
        head, i = [], 0
        for m in net.classifier:
            if isinstance(m, nn.Linear):
                m, i = nn.Linear(widths[i], widths[i + 1]), i + 1
            head.append(m)
        net.classifier = nn.Sequential(*head)
    return net


@dataclass(frozen=True)
class Size:
    shrink: int
    image: int
    n_train: int
    steps: int
    lr: float = 0.01  # AlexNet's recipe: SGD lr 0.01, momentum 0.9


SIZES = {"tiny": Size(16, 64, 100, 4), "small": Size(8, 64, 4000, 300), "full": Size(1, 128, 20000, 3000)}


@training_claim("lrn", sizes=SIZES)
def lrn(s: Size, data: Data) -> ClaimResult:
    """AlexNet used local response normalisation (to damp large ReLU outputs); it is hardly used now, and
    BatchNorm has taken its place.

    Measures: final training loss, train and val accuracy of the package's alexnet_lrn (channels and FC widths
    divided by the budget's shrink factor, 64 px input at small) with LRN, without it and with BatchNorm in its
    place; SGD lr 0.01 m 0.9 (AlexNet's), synthetic shapes set
    Paper: Krizhevsky et al. 2012, section 3.3 (LRN: -1.4% top-1, -1.2% top-5 error); Simonyan & Zisserman 2015
    (A-LRN no better than A)
    Notes: seeds/000_4943f345b6f0fdd0.txt:124-126, seeds/001_ad955026876a85d8.txt:257
    """
    rows, runs = [], {}
    for norm in NORMS:
        net = seeded(0, lambda: alexnet_variant(norm, s.shrink), data)
        run = runs[norm] = fit(net, data, s.steps, s.lr, eval_every=max(1, s.steps // 20))
        rows.append({"normalisation": norm, "params": sum(p.numel() for p in net.parameters()),
                     "final train loss": round(run.final_loss(), 4),
                     "train acc (batches)": round(run.final_batch_acc(), 3),
                     "val acc (eval mode)": round(run.val_acc, 3)})
    paper, none, bn = (runs[n] for n in NORMS)
    # "not needed": dropping LRN costs at most 2 points of val accuracy, which says something only if the
    # LRN network trained at all; "replaced": BN at least as good
    checks = [learned(paper) and none.val_acc >= paper.val_acc - 0.02, bn.val_acc >= paper.val_acc,
              bn.final_loss() <= paper.final_loss()]
    finding = (f"val acc with LRN {paper.val_acc:.3f}, without {none.val_acc:.3f}, BatchNorm instead {bn.val_acc:.3f}; "
               f"final training loss {paper.final_loss():.3f} / {none.final_loss():.3f} / {bn.final_loss():.3f}; "
               f"LRN not needed (<= 2 points, and the LRN net left chance level), BN at least as good (val acc, "
               f"loss): {checks}" + ("" if learned(paper) else f"; with LRN and without it the network stayed at chance "
                                    f"(loss ln 10 = 2.303) for all {s.steps} steps, so LRN's effect is not measured here"))
    return ClaimResult(rows, verdict_of(checks), finding, {"alexnet_lrn": {n: curve(r) for n, r in runs.items()}})
