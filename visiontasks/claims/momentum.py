"""SGD with momentum 0.9 vs without, and the notes' recipe (lr 0.01, divided by 10 when the accuracy
stops rising), on the same BatchNorm CNN."""

from __future__ import annotations


import torch

from ._nets import small_cnn, steps_text
from ._registry import ClaimResult, verdict_of
from ._train import ClaimSize, Data, curve, fit, seeded, training_claim

TARGET = 0.6  # training accuracy to reach (the batch_norm claim's threshold)


def lr_on_plateau(opt: torch.optim.Optimizer) -> object:
    """The notes' recipe: divide the lr by 10 when the (val) accuracy stops rising, three times at most."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.1, patience=2, min_lr=0.01e-3)


ARMS = {  # name: (lr, momentum, plateau schedule)
    "SGD lr 0.01": (0.01, 0.0, False),
    "SGD lr 0.01 m 0.9": (0.01, 0.9, False),
    "SGD lr 0.1 (= 0.01 m 0.9's step)": (0.1, 0.0, False),
    "m 0.9 + lr/10 on plateau": (0.01, 0.9, True),
}


SIZES = {"tiny": ClaimSize(4, 16, 200, 6), "small": ClaimSize(8, 24, 5000, 300), "full": ClaimSize(32, 32, 20000, 4000)}


@training_claim("momentum", sizes=SIZES)
def momentum(s: ClaimSize, data: Data) -> ClaimResult:
    """SGD with momentum (m < 1, usually 0.9: part of the previous step is kept) trains better than plain SGD;
    the recipe is lr 0.01 divided by 10 when the accuracy stops improving (three times).

    Measures: steps to 60% training accuracy, final training loss and val accuracy of a 6-conv BatchNorm CNN:
    SGD lr 0.01 without and with momentum 0.9, SGD lr 0.1 without momentum (the same long-run step size as lr
    0.01 with m 0.9: lr / (1 - m)), and m 0.9 with lr/10 on val-accuracy plateaus (patience 2 evaluations), on
    the synthetic shapes set
    Paper: Sutskever et al. 2013; Krizhevsky et al. 2012, section 5 (the lr/10 recipe)
    Notes: seeds/002_fe5bbf9b65554f16.txt:95-101, seeds/001_ad955026876a85d8.txt:316,
    seeds/001_ad955026876a85d8.txt:369
    """
    rows, runs = [], {}
    for name, (lr, m, plateau) in ARMS.items():
        net = seeded(0, lambda: small_cnn(s.image, s.width, convs_per_stage=2, bn=True), data)
        run = runs[name] = fit(net, data, s.steps, lr, momentum=m, eval_every=max(1, s.steps // 25),
                               plateau=lr_on_plateau if plateau else None)
        rows.append({"optimiser": name,
                     f"steps to {TARGET:.0%} train-batch acc": steps_text(run.steps_to(TARGET), s.steps),
                     "final train loss": round(run.final_loss(), 4),
                     "train acc (batches)": round(run.final_batch_acc(), 3),
                     "val acc (eval mode)": round(run.val_acc, 3), "final lr": run.lrs[-1] if run.lrs else lr})
    plain, mom, big_lr, recipe = (runs[n] for n in ARMS)
    big = s.steps + 1
    checks = [(mom.steps_to(TARGET) or big) < (plain.steps_to(TARGET) or big), mom.final_loss() < plain.final_loss(),
              recipe.val_acc >= mom.val_acc]
    finding = (f"steps to {TARGET:.0%}: no momentum {steps_text(plain.steps_to(TARGET), s.steps)}, m 0.9 "
               f"{steps_text(mom.steps_to(TARGET), s.steps)}, lr 0.1 without momentum "
               f"{steps_text(big_lr.steps_to(TARGET), s.steps)}; final loss {plain.final_loss():.3f} / "
               f"{mom.final_loss():.3f} / {big_lr.final_loss():.3f}; lr/10 on plateau: val acc {recipe.val_acc:.3f} "
               f"vs {mom.val_acc:.3f} (final lr {recipe.lrs[-1] if recipe.lrs else ''}); momentum faster, lower loss, "
               f"recipe at least as good: {checks}")
    curves = {"momentum": {n: curve(runs[n]) for n in list(ARMS)[:3]},
              "lr/10 on plateau": {n: curve(runs[n]) for n in list(ARMS)[1::2]}}
    return ClaimResult(rows, verdict_of(checks), finding, curves)
