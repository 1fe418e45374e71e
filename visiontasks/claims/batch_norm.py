"""BatchNorm vs none: the same plain CNN with and without BatchNorm, trained at two learning rates;
steps to a given training accuracy."""

from __future__ import annotations

from dataclasses import dataclass

from ._nets import small_cnn, steps_text
from ._registry import ClaimResult, verdict_of
from ._train import ClaimSize, Data, curve, faster, fit, seeded, training_claim

TARGET = 0.6  # training accuracy to reach (fixed before measuring; 10 classes, chance 0.1)


@dataclass(frozen=True)
class Size(ClaimSize):
    lrs: tuple[float, ...] = (0.01, 0.1)


SIZES = {"tiny": Size(4, 16, 200, 6), "small": Size(8, 24, 5000, 300), "full": Size(32, 32, 20000, 3000)}


@training_claim("batch_norm", sizes=SIZES)
def batch_norm(s: Size, data: Data) -> ClaimResult:
    """Batch normalisation smooths the optimisation landscape and helps gradient descent: with it the same
    network trains faster.

    Measures: SGD steps (momentum 0.9, batch 64) to 60% training accuracy (when neither arm gets there: the
    lower final training loss wins) and final training loss of a 6-convolution plain CNN (3x3, two per stage,
    GAP head) with and without BatchNorm, at lr 0.01 and 0.1, on the synthetic shapes set
    Paper: Ioffe & Szegedy 2015 (14x fewer steps to Inception's accuracy); Santurkar et al. 2018 (smoothness)
    Notes: seeds/002_fe5bbf9b65554f16.txt:198-204, seeds/000_4943f345b6f0fdd0.txt:126
    """
    rows, runs, checks = [], {}, []
    for lr in s.lrs:
        for bn in (False, True):
            net = seeded(0, lambda: small_cnn(s.image, s.width, convs_per_stage=2, bn=bn), data)
            run = runs[lr, bn] = fit(net, data, s.steps, lr, eval_every=max(1, s.steps // 20))
            rows.append({"BatchNorm": "yes" if bn else "no", "lr": lr,
                         f"steps to {TARGET:.0%} train-batch acc": steps_text(run.steps_to(TARGET), s.steps),
                         "final train loss": round(run.final_loss(), 4),
                         "train acc (batches)": round(run.final_batch_acc(), 3),
                         "val acc (eval mode)": round(run.val_acc, 3)})
        checks.append(faster(runs[lr, True], runs[lr, False], TARGET))
    finding = "; ".join(
        f"lr {lr}: steps to {TARGET:.0%} without BN {steps_text(runs[lr, False].steps_to(TARGET), s.steps)}, with BN "
        f"{steps_text(runs[lr, True].steps_to(TARGET), s.steps)} (final loss {runs[lr, False].final_loss():.3f} vs "
        f"{runs[lr, True].final_loss():.3f})" for lr in s.lrs)
    curves = {f"lr {lr}": {"no BN": curve(runs[lr, False]), "BN": curve(runs[lr, True])} for lr in s.lrs}
    return ClaimResult(rows, verdict_of(checks), finding + f"; BN faster at each lr: {checks}", curves)
