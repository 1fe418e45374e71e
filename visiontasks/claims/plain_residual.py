"""Plain vs residual networks at two depths (ResNet's degradation problem), trained on the
synthetic shapes set: does the deeper plain network train worse and the residual one not?"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

from ._registry import ClaimResult, verdict_of
from ._train import ClaimSize, Data, curve, fit, seeded, training_claim


class PlainBlock(BasicBlock):
    """torchvision's ``BasicBlock`` (the one our resnet18/34 backbones are built of) with the identity
    shortcut taken out: the paper's plain counterpart, same convolutions, BatchNorm and ReLUs."""

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))


def cifar_net(blocks: int, residual: bool, width: int = 16, num_classes: int = 10) -> nn.Sequential:
    """He et al.'s CIFAR network (section 4.2): a 3x3 convolution, three stages of ``blocks`` basic
    blocks at ``width``, 2x``width``, 4x``width`` channels (stride 2 between stages), global average
    pooling and one FC layer: ``6 * blocks + 2`` weight layers. Residual stages change shape through
    torchvision's 1x1 projection shortcut (the paper's option B; its CIFAR nets used zero padding, A)."""
    block = BasicBlock if residual else PlainBlock
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    c_in = width
    for stage in range(3):
        c = width * 2**stage
        for i in range(blocks):
            stride = 2 if stage > 0 and i == 0 else 1
            down = None
            if residual and (stride != 1 or c_in != c):
                down = nn.Sequential(nn.Conv2d(c_in, c, 1, stride, bias=False), nn.BatchNorm2d(c))
            layers.append(block(c_in, c, stride, down))
            c_in = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(c_in, num_classes)]
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class Size(ClaimSize):
    blocks: tuple[int, int] = (1, 4)  # shallow, deep: blocks per stage
    lr: float = 0.1  # the paper's CIFAR recipe: SGD lr 0.1, momentum 0.9


SIZES = {"tiny": Size(4, 16, 200, 6, blocks=(1, 2)), "small": Size(8, 24, 5000, 300, blocks=(1, 4)),
         "full": Size(16, 32, 20000, 4000, blocks=(3, 9))}


@training_claim("plain_vs_residual", sizes=SIZES)
def plain_vs_residual(s: Size, data: Data) -> ClaimResult:
    """A deeper plain network trains worse than a shallower one (higher training error: degradation, not
    overfitting); with skip connections the deeper network trains at least as well.

    Measures: final training loss and train/val accuracy of He et al.'s CIFAR plain and residual nets
    (torchvision BasicBlock, with and without its shortcut) at two depths, SGD lr 0.1 m 0.9, on the synthetic
    shapes set
    Paper: He et al. 2016, Fig. 1 and Fig. 6 (plain-20 vs plain-56 on CIFAR-10)
    Notes: seeds/000_4943f345b6f0fdd0.txt:159-177, seeds/001_ad955026876a85d8.txt:428-443,
    seeds/002_fe5bbf9b65554f16.txt:171-180
    """
    rows, runs = [], {}
    for residual in (False, True):
        for blocks in s.blocks:
            net = seeded(0, lambda: cifar_net(blocks, residual, s.width), data)
            run = fit(net, data, s.steps, s.lr, eval_every=max(1, s.steps // 10))
            runs[residual, blocks] = run
            rows.append({"network": "residual" if residual else "plain", "layers": 6 * blocks + 2,
                         "steps": s.steps, "final train loss": round(run.final_loss(), 4),
                         "train acc (batches)": round(run.final_batch_acc(), 3),
                         "val acc (eval mode)": round(run.val_acc, 3),
                         "seconds": round(run.seconds, 1)})
    shallow, deep = s.blocks
    loss = {k: r.final_loss() for k, r in runs.items()}
    checks = [loss[False, deep] > loss[False, shallow],  # degradation of the plain net
              loss[True, deep] <= loss[False, deep],  # the shortcut fixes the deep net...
              loss[True, deep] <= 1.05 * loss[True, shallow]]  # ...which trains as well as the shallow one
    ls, ld = 6 * shallow + 2, 6 * deep + 2
    finding = (f"final training loss after {s.steps} steps: plain-{ls} {loss[False, shallow]:.3f}, plain-{ld} "
               f"{loss[False, deep]:.3f}; residual-{ls} {loss[True, shallow]:.3f}, residual-{ld} {loss[True, deep]:.3f} "
               f"(checks: plain-{ld} worse than plain-{ls}, residual-{ld} better than plain-{ld}, residual-{ld} "
               f"within 5% of residual-{ls} or better: {checks})")
    curves = {f"{'residual' if r else 'plain'}": {f"{6 * b + 2} layers": curve(runs[r, b]) for b in s.blocks}
              for r in (False, True)}
    return ClaimResult(rows, verdict_of(checks), finding, curves)
