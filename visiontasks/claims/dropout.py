"""Dropout on/off: the train/val gap of a CNN with AlexNet's FC head, on a training set small
enough to overfit."""

from __future__ import annotations

from dataclasses import dataclass

from ._nets import small_cnn
from ._registry import ClaimResult, verdict_of
from ._train import ClaimSize, Data, curve, fit, seeded, training_claim

OVERFIT = 0.1  # the claim is tested only if the net without dropout overfits: train - val acc >= 0.1


@dataclass(frozen=True)
class Size(ClaimSize):  # n_train small on purpose: the network can memorise it
    hidden: int
    lr: float = 0.03  # momentum 0.9; at the notes' lr 0.01, 500 steps never left chance level: no overfitting


SIZES = {"tiny": Size(4, 16, 100, 6, 16), "small": Size(8, 24, 1000, 800, 256),
         "full": Size(32, 32, 2000, 4000, 1024)}


@training_claim("dropout", sizes=SIZES)
def dropout(s: Size, data: Data) -> ClaimResult:
    """Dropout (zeroing hidden units with probability p during training) keeps the network from relying on
    single units and is one of the main defences against overfitting.

    Measures: train and val accuracy (eval mode), and their gap at the end of a 3-conv CNN with AlexNet's head
    (FC-FC-FC) with dropout p=0.5 before both hidden FC layers vs p=0, trained past memorisation on a small
    synthetic shapes training set (SGD lr 0.03 m 0.9)
    Paper: Krizhevsky et al. 2012, section 4.2; Srivastava et al. 2014
    Notes: seeds/001_ad955026876a85d8.txt:277-279, seeds/000_4943f345b6f0fdd0.txt:127,
    seeds/000_4943f345b6f0fdd0.txt:142
    """
    rows, runs = [], {}
    for p in (0.0, 0.5):
        net = seeded(0, lambda: small_cnn(s.image, s.width, fc_hidden=s.hidden, dropout=p), data)
        run = runs[p] = fit(net, data, s.steps, s.lr, eval_every=max(1, s.steps // 20))
        rows.append({"dropout p": p, "steps": s.steps, "final train loss": round(run.final_loss(), 4),
                     "train acc": round(run.train_acc, 3), "val acc": round(run.val_acc, 3),
                     "gap": round(run.train_acc - run.val_acc, 3),
                     "best val acc": round(max(v for *_, v in run.evals), 3)})
    off, on = rows
    checks = [off["gap"] >= OVERFIT, on["gap"] < off["gap"], on["val acc"] >= off["val acc"]]
    finding = (f"train/val gap without dropout {off['gap']:.3f} ({off['train acc']:.3f}/{off['val acc']:.3f}), with "
               f"p=0.5 {on['gap']:.3f} ({on['train acc']:.3f}/{on['val acc']:.3f}), {s.n_train} training images; "
               f"net without dropout overfits (gap >= {OVERFIT}), dropout's gap smaller, val acc at least as high: "
               f"{checks}")
    curves = {"training loss": {f"dropout {p}": curve(r) for p, r in runs.items()},
              "val error (1 - val acc)": {f"dropout {p}": {"step": [e[0] for e in r.evals],
                                                          "loss": [round(1 - e[2], 4) for e in r.evals]}
                                          for p, r in runs.items()}}
    return ClaimResult(rows, verdict_of(checks), finding, curves)
