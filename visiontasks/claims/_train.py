"""The training claims' loop: plain torch SGD on in-memory tensors, seeded, on one CPU thread.

The training claims are about optimisation (how fast the training loss falls, in steps), so a plain
loop is enough and keeps them fast: no Lightning, no data loader, no augmentation. Every arm of a
claim sees the same images, the same initialisation seed and the same batch order.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, TypeVar

import torch
from torch import Tensor, nn

from ._registry import Budget, ClaimResult, claim


@dataclass
class Data:
    """In-memory training and validation tensors: images ``[N, 3, H, W]``, labels ``[N]``."""

    x: Tensor
    y: Tensor
    val_x: Tensor
    val_y: Tensor

    @property
    def device(self) -> torch.device:
        return self.x.device


@dataclass
class Run:
    """One training run: ``loss`` and ``batch_acc`` are the mean training loss and accuracy (train
    mode, each batch before its update, as the papers' training-error curves) of each ``log_every``
    block of steps, at ``steps``; ``evals`` are ``(step, train accuracy, val accuracy)`` in eval mode
    on fixed subsets (eval mode uses BatchNorm's running statistics, which lag at high learning rates)."""

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    batch_acc: list[float] = field(default_factory=list)
    evals: list[tuple[int, float, float]] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def final_loss(self, fraction: float = 0.1) -> float:
        """Mean logged training loss over the last ``fraction`` of the run."""
        k = max(1, round(len(self.loss) * fraction))
        return sum(self.loss[-k:]) / k

    def final_batch_acc(self, fraction: float = 0.1) -> float:
        """Mean logged training-batch accuracy over the last ``fraction`` of the run."""
        k = max(1, round(len(self.batch_acc) * fraction))
        return sum(self.batch_acc[-k:]) / k

    def steps_to(self, train_accuracy: float) -> int | None:
        """First logged step whose block of training batches reaches ``train_accuracy``; None if never."""
        return next((s for s, acc in zip(self.steps, self.batch_acc) if acc >= train_accuracy), None)

    @property
    def train_acc(self) -> float:
        return self.evals[-1][1]

    @property
    def val_acc(self) -> float:
        return self.evals[-1][2]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run on one CPU thread (the claims are budgeted for a shared 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch: int = 500) -> float:
    """Top-1 accuracy of ``model`` in eval mode."""
    was = model.training
    model.eval()
    hits = sum(int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum()) for i in range(0, len(x), batch))
    model.train(was)
    return hits / len(x)


def fit(model: nn.Module, data: Data, steps: int, lr: float, momentum: float = 0.9, batch: int = 64,
        seed: int = 0, log_every: int = 10, eval_every: int = 50, eval_n: int = 1000,
        plateau: Callable[[torch.optim.Optimizer], object] | None = None,
        weight_decay: float = 0.0) -> Run:
    """Train ``model`` with SGD and cross-entropy for ``steps`` mini-batches of ``batch`` images, the
    batch order fixed by ``seed``. ``plateau(optimizer)`` builds a scheduler stepped with the val
    accuracy at each evaluation (``ReduceLROnPlateau(mode="max")``: the notes' lr/10 recipe)."""
    import time

    device = data.x.device
    log_every = min(log_every, max(1, steps // 10))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = plateau(opt) if plateau else None
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data.x), generator=g)
    run, pos, block, hits = Run(), 0, [], []
    train_eval = (data.x[:eval_n], data.y[:eval_n])
    t0 = time.perf_counter()
    model.train()
    for step in range(1, steps + 1):
        if pos + batch > len(order):
            order, pos = torch.randperm(len(data.x), generator=g), 0
        idx = order[pos:pos + batch].to(device)
        pos += batch
        logits = model(data.x[idx])
        loss = nn.functional.cross_entropy(logits, data.y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        block.append(loss.item())
        hits.append(float((logits.argmax(1) == data.y[idx]).float().mean()))
        if step % log_every == 0:
            run.steps.append(step)
            run.loss.append(sum(block) / len(block))
            run.batch_acc.append(sum(hits) / len(hits))
            run.lrs.append(opt.param_groups[0]["lr"])
            block, hits = [], []
        if step % eval_every == 0 or step == steps:
            run.evals.append((step, accuracy(model, *train_eval), accuracy(model, data.val_x, data.val_y)))
            if sched is not None:
                sched.step(run.evals[-1][2])
    run.seconds = time.perf_counter() - t0
    return run


CHANCE_LOSS = 2.302585  # ln 10: cross-entropy of a 10-class guess


def learned(run: Run) -> bool:
    """Whether the run left chance level: final training loss below 90% of ln 10."""
    return run.final_loss() < 0.9 * CHANCE_LOSS


def faster(a: Run, b: Run, target: float) -> bool:
    """``a`` trains faster than ``b``: reaches ``target`` training-batch accuracy in fewer steps, or,
    when neither reaches it, ends at a lower training loss (one rule for every training claim)."""
    sa, sb = a.steps_to(target), b.steps_to(target)
    if sa is None and sb is None:
        return a.final_loss() < b.final_loss()
    return sb is None or (sa is not None and sa < sb)


def shapes_data(n_train: int, n_val: int, size: int, seed: int = 0, device: str = "cpu") -> Data:
    """The synthetic shapes set (``_shapes.make_shapes``), training and validation from disjoint seeds."""
    from ._shapes import make_shapes

    x, y = make_shapes(n_train, size, seed=seed)
    vx, vy = make_shapes(n_val, size, seed=seed + 10_000)
    return Data(x.to(device), y.to(device), vx.to(device), vy.to(device))


def device_for(budget: str) -> str:
    """``full`` runs on the GPU when there is one; ``small`` and ``tiny`` on the CPU."""
    return "cuda" if budget == "full" and torch.cuda.is_available() else "cpu"


def claim_data(budget: str, n_train: int, size: int) -> Data:
    """The data of a training claim at ``budget``: the shapes set with ``n_train`` training images of
    ``size`` px and a 1,000-image validation set (100 at the ``tiny`` test size), on the budget's device."""
    return shapes_data(n_train, 1000 if budget != "tiny" else 100, size, device=device_for(budget))


@dataclass(frozen=True)
class ClaimSize:
    """A training claim's size at one budget: network ``width``, ``image`` side in px, ``n_train``
    training images, SGD ``steps`` (a claim needing more subclasses it)."""

    width: int
    image: int
    n_train: int
    steps: int


S = TypeVar("S")


def training_claim(name: str, sizes: Mapping[str, S]
                   ) -> Callable[[Callable[[S, Data], ClaimResult]], Callable[[S, Data], ClaimResult]]:
    """Decorator registering ``fn(size, data) -> ClaimResult`` as the training claim ``name`` (its
    docstring as for :func:`~._registry.claim`): run at a budget, it gets ``sizes[budget]`` (with
    ``n_train`` and ``image``, e.g. a :class:`ClaimSize`) and :func:`claim_data` at that size, on one
    CPU thread."""

    def register(fn: Callable[[S, Data], ClaimResult]) -> Callable[[S, Data], ClaimResult]:
        def at_budget(budget: Budget) -> ClaimResult:
            size = sizes[budget]
            data = claim_data(budget, size.n_train, size.image)
            with one_thread():
                return fn(size, data)

        functools.update_wrapper(at_budget, fn)
        claim(name, kind="training")(at_budget)
        return fn

    return register


def seeded(seed: int, make: Callable[[], nn.Module], data: Data) -> nn.Module:
    """``make()`` with the initialisation drawn from ``seed`` (the same for every arm), on ``data``'s device."""
    torch.manual_seed(seed)
    return make().to(data.device)


def curve(run: Run) -> dict[str, list]:
    """The run's training-loss curve as JSON: ``{"step": [...], "loss": [...]}``."""
    return {"step": run.steps, "loss": [round(v, 4) for v in run.loss]}
