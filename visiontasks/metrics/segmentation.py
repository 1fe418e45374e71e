"""Semantic-segmentation scores from one confusion matrix accumulated over an epoch.

:class:`SegmentationMetrics` is torchmetrics' ``MulticlassConfusionMatrix`` (its ``confmat`` state is
summed across processes under DDP, and pixels labelled ``ignore_index`` are dropped) with a
``compute`` that turns the matrix into the usual scores (:func:`segmentation_scores`).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

from visiontasks.errors import InvalidInputError


def segmentation_scores(confmat: Tensor) -> dict[str, Tensor]:
    """Scores from a confusion matrix ``[K, K]`` (rows: ground truth, columns: prediction).

    Returns float tensors:
      - ``iou`` ``[K]``: ``TP / (TP + FP + FN)`` per class; NaN for a class absent from both the
        ground truth and the predictions (its union is empty);
      - ``mIoU``: mean of ``iou`` over the classes that are not NaN (macro average);
      - ``pixel_acc``: correctly labelled pixels / labelled pixels;
      - ``class_acc`` ``[K]``: ``TP / ground-truth pixels`` per class (NaN when the class has none);
      - ``mean_class_acc``: mean of ``class_acc`` over classes present in the ground truth.
    Every value is NaN when the matrix is empty.
    """
    cm = confmat.double()
    tp = cm.diagonal()
    gt = cm.sum(dim=1)
    pred = cm.sum(dim=0)
    union = gt + pred - tp
    nan = torch.tensor(float("nan"), dtype=cm.dtype, device=cm.device)
    iou = torch.where(union > 0, tp / union.clamp(min=1), nan)
    class_acc = torch.where(gt > 0, tp / gt.clamp(min=1), nan)
    total = cm.sum()
    return {
        "iou": iou.float(),
        "mIoU": iou.nanmean().float(),
        "pixel_acc": (tp.sum() / total if total > 0 else nan).float(),
        "class_acc": class_acc.float(),
        "mean_class_acc": class_acc.nanmean().float(),
    }


class SegmentationMetrics(MulticlassConfusionMatrix):
    """Accumulates a ``[K, K]`` pixel confusion matrix; ``compute()`` returns
    :func:`segmentation_scores` of it plus ``confmat``.

    ``update(preds, target)``: ``preds`` are logits/probabilities ``[N, K, H, W]`` (argmax over
    ``K``) or class indices ``[N, H, W]``; ``target`` is ``[N, H, W]`` with classes in
    ``0..K-1`` or ``ignore_index``.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = 255,
        class_names: Sequence[str] | None = None,
        validate_args: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(num_classes, ignore_index=ignore_index, validate_args=validate_args, **kwargs)
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        if len(self.class_names) != num_classes:
            raise InvalidInputError(f"{len(self.class_names)} class names for {num_classes} classes")

    def compute(self) -> dict[str, Tensor]:  # type: ignore[override]
        scores = segmentation_scores(self.confmat)
        scores["confmat"] = self.confmat.clone()
        return scores

    def per_class(self, scores: dict[str, Tensor]) -> dict[str, float]:
        """``{class name: IoU}`` from :meth:`compute`'s output (NaN for classes never seen)."""
        return {n: float(v) for n, v in zip(self.class_names, scores["iou"].tolist())}


def format_iou_table(class_names: Sequence[str], scores: dict[str, Tensor]) -> str:
    """A plain-text table: one row per class (IoU, accuracy, ground-truth pixels) and the means."""
    cm = scores.get("confmat")
    gt = cm.sum(dim=1).tolist() if cm is not None else [0] * len(class_names)
    width = max([len("class"), len("mean"), *(len(str(n)) for n in class_names)])
    lines = [f"{'class':<{width}}  {'IoU':>7}  {'acc':>7}  {'pixels':>10}"]
    lines.append("-" * len(lines[0]))
    for name, iou, acc, n in zip(class_names, scores["iou"].tolist(), scores["class_acc"].tolist(), gt):
        lines.append(f"{str(name):<{width}}  {_fmt(iou):>7}  {_fmt(acc):>7}  {int(n):>10d}")
    lines.append("-" * len(lines[0]))
    lines.append(f"{'mean':<{width}}  {_fmt(float(scores['mIoU'])):>7}  {_fmt(float(scores['mean_class_acc'])):>7}")
    lines.append(f"pixel accuracy {_fmt(float(scores['pixel_acc']))}")
    return "\n".join(lines)


def _fmt(v: float) -> str:
    return "-" if v != v else f"{v:.4f}"
