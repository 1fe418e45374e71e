"""Evaluation reports as files: JSON/text metrics, confusion matrices (CSV + PNG), PR curves, and the
whole detection report that ``visiontasks evaluate detection`` and a detection ``test`` both write.

No Lightning here (``visiontasks evaluate`` starts without it); matplotlib is imported when a figure
is drawn.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # torch and torchvision load only when a detection report is made
    from visiontasks.metrics.detection_diagnostics import ClassPR, ImageBoxes


def clean_json(value: Any) -> Any:
    """JSON-safe: NaN -> None, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def nanmean(values: Sequence[float]) -> float:
    """Mean of the values that are not NaN (NaN when there are none)."""
    kept = [v for v in values if v == v]
    return float(np.mean(kept)) if kept else float("nan")


def fmt(v: float | None) -> str:
    return "-" if v is None or v != v else f"{v:.4f}"


def write_metrics(out: Path, metrics: dict[str, Any], table: str) -> None:
    """``metrics.json`` and ``metrics.txt`` (the printed table) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(clean_json(metrics), indent=1) + "\n")
    (out / "metrics.txt").write_text(table + "\n")


def write_matrix_csv(path: Path, matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ground truth \\ predicted", *cols])
        for name, row in zip(rows, matrix.tolist()):
            w.writerow([name, *row])


def plot_matrix(path: Path, matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, m = matrix.shape
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * m + 2), max(4, 0.6 * n + 1.5)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(m), [str(c) for c in cols], rotation=45, ha="right")
    ax.set_yticks(range(n), [str(r) for r in rows])
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    if n * m <= 900:
        top = matrix.max() if matrix.size else 0
        for i in range(n):
            for j in range(m):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if top and matrix[i, j] > top / 2 else "black")
    ax.set_title(title)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_pr(folder: Path, names: list[str], curves: list[ClassPR], aps: list[float]) -> None:
    """One PNG per class in ``folder``: precision against recall at IoU 0.5, with the monotone
    envelope whose area is the VOC AP."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    for name, pr, ap in zip(names, curves, aps):
        fig, ax = plt.subplots(figsize=(4.5, 4))
        if pr.num_gt and len(pr.recall):
            envelope = np.maximum.accumulate(pr.precision[::-1])[::-1]
            ax.plot(pr.recall, pr.precision, color="0.6", lw=1, label="precision")
            ax.plot(pr.recall, envelope, drawstyle="steps-pre", lw=1.5, label="interpolated (AP area)")
            ax.legend(loc="lower left", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"{name}: AP@0.5 {fmt(ap)} ({pr.num_gt} objects)")
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
        fig.savefig(folder / f"{safe}.png", dpi=100, bbox_inches="tight")
        plt.close(fig)


# -- the detection report ------------------------------------------------------------------------------
def detection_report(gts: list[ImageBoxes], dets: list[ImageBoxes], names: list[str], conf: float = 0.25,
                     voc07: bool = False) -> tuple[dict[str, Any], str, np.ndarray, list[ClassPR], list[float]]:
    """COCO mAP/mAR with S/M/L and per-class AP (torchmetrics on faster_coco_eval), VOC AP at IoU 0.5
    per class (and VOC07's 11-point with ``voc07``) and the confusion matrix at IoU 0.5 of detections
    scoring >= ``conf``. Boxes xyxy in file pixels. Returns ``(metrics, table text, confusion matrix
    [K+1, K+1], PR curve per class, VOC AP per class)``."""
    import torch

    from visiontasks.metrics.detection import make_map_metric
    from visiontasks.metrics.detection_diagnostics import detection_confusion_matrix, voc_results

    k = len(names)
    metric = make_map_metric(class_metrics=True)
    metric.update(
        [{"boxes": torch.as_tensor(d.boxes, dtype=torch.float64), "scores": torch.as_tensor(d.scores, dtype=torch.float64),
          "labels": torch.as_tensor(d.labels)} for d in dets],
        [{"boxes": torch.as_tensor(g.boxes, dtype=torch.float64), "labels": torch.as_tensor(g.labels)} for g in gts],
    )
    res = metric.compute()
    coco = {key: float(res[src]) for key, src in (
        ("mAP", "map"), ("mAP50", "map_50"), ("mAP75", "map_75"), ("mAR1", "mar_1"), ("mAR10", "mar_10"),
        ("mAR100", "mar_100"), ("AP_small", "map_small"), ("AP_medium", "map_medium"), ("AP_large", "map_large"))}
    coco = {key: (v if v >= 0 else float("nan")) for key, v in coco.items()}  # COCO's -1: no data
    coco_ap = {n: float("nan") for n in names}
    for c, ap in zip(res["classes"].reshape(-1).tolist(), res["map_per_class"].reshape(-1).tolist()):
        if 0 <= c < k and ap >= 0:
            coco_ap[names[c]] = float(ap)

    curves, voc_ap, voc07_ap = voc_results(gts, dets, k, iou_thresh=0.5)
    cm = detection_confusion_matrix(gts, dets, k, iou_thresh=0.5, score_thresh=conf)
    metrics: dict[str, Any] = {
        "coco": coco, "coco_AP_per_class": coco_ap,
        "voc_AP50_per_class": dict(zip(names, voc_ap)), "voc_mAP50": nanmean(voc_ap),
        "images": len(gts), "ground_truth_boxes": int(sum(len(g.labels) for g in gts)),
        "detections": int(sum(len(d.labels) for d in dets)),
        "confusion_matrix": {"rows": [*names, "background"], "columns": [*names, "missed"],
                             "score_thresh": conf, "matrix": cm.tolist()},
    }
    if voc07:
        metrics["voc07_AP50_per_class"] = dict(zip(names, voc07_ap))
        metrics["voc07_mAP50"] = nanmean(voc07_ap)

    lines = [f"detection: {len(gts)} images, {metrics['ground_truth_boxes']} boxes, {metrics['detections']} detections"]
    lines += [f"  COCO {key:<10} {fmt(v)}" for key, v in coco.items()]
    lines.append(f"  VOC mAP@0.5 (all points) {fmt(metrics['voc_mAP50'])}"
                 + (f"   VOC07 11-point {fmt(metrics['voc07_mAP50'])}" if voc07 else ""))
    width = max([5, *(len(n) for n in names)])
    head = f"{'class':<{width}}  {'COCO AP':>8}  {'VOC AP50':>8}" + (f"  {'VOC07':>8}" if voc07 else "") + f"  {'gt':>6}"
    lines += ["", head, "-" * len(head)]
    for c, n in enumerate(names):
        lines.append(f"{n:<{width}}  {fmt(coco_ap[n]):>8}  {fmt(voc_ap[c]):>8}"
                     + (f"  {fmt(voc07_ap[c]):>8}" if voc07 else "") + f"  {curves[c].num_gt:>6d}")
    return metrics, "\n".join(lines), cm, curves, voc_ap


def write_detection_report(out: Path, gts: list[ImageBoxes], dets: list[ImageBoxes], names: list[str],
                           conf: float = 0.25, voc07: bool = False) -> tuple[dict[str, Any], str]:
    """:func:`detection_report` written to ``out``: ``metrics.json``, ``metrics.txt``,
    ``confusion_matrix.csv`` / ``.png`` and ``pr_curves/<class>.png``. Returns ``(metrics, table)``."""
    metrics, table, cm, curves, voc_ap = detection_report(gts, dets, names, conf, voc07)
    write_metrics(out, metrics, table)
    rows, cols = [*names, "background"], [*names, "missed"]
    write_matrix_csv(out / "confusion_matrix.csv", cm, rows, cols)
    plot_matrix(out / "confusion_matrix.png", cm, rows, cols, f"detections (score >= {conf}) at IoU 0.5")
    plot_pr(out / "pr_curves", names, curves, voc_ap)
    return metrics, table
