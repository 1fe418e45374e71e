"""Keypoint AP by OKS (object keypoint similarity): COCO's ``iouType="keypoints"`` evaluation through
faster_coco_eval (the backend of the box mAP), as a torchmetrics :class:`Metric` and as a function
of COCO dicts (what ``visiontasks evaluate keypoints`` scores files with).

OKS of a detection and a ground-truth object is ``mean over labelled keypoints of exp(-d^2 / (2 s^2
k^2))``, ``d`` the pixel distance, ``k`` the keypoint's sigma (x 2, as cocoapi), ``s^2`` the object's
area. COCO takes that area from the person's segmentation; where no segmentation area is known (the
targets here carry boxes and keypoints only) the box area ``w * h`` stands in: a box is larger than
the person's pixels, so OKS is somewhat more lenient than COCO's own numbers on the same points.
Ground-truth objects without a labelled keypoint (v = 0 everywhere) are ignored, as COCO does;
at most 20 detections per image count (COCO's ``maxDets`` for keypoints).
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, Sequence

import torch
from torch import Tensor
from torchmetrics import Metric


def coco_keypoint_ap(gt: dict[str, Any], results: list[dict[str, Any]], sigmas: Sequence[float]) -> dict[str, float]:
    """COCO keypoint AP of ``results`` (COCO results: ``image_id``, ``category_id``, ``keypoints``
    flat ``[x, y, score] * P``, ``score``) against ``gt`` (a COCO person-keypoints dict: ``images``,
    ``annotations`` with ``keypoints``, ``num_keypoints``, ``area``, ``bbox``, ``iscrowd``,
    ``categories``) with per-keypoint OKS ``sigmas``: ``{kp_map, kp_map_50, kp_map_75, kp_mar}``
    (COCOeval's stats 0, 1, 2 and 5; -1: no ground truth to score)."""
    from faster_coco_eval import COCO, COCOeval_faster

    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        coco_gt = COCO(gt)
        if not results:  # COCO cannot load an empty results list: no detection scores 0
            has_gt = any(a.get("num_keypoints", 0) > 0 and not a.get("iscrowd", 0) for a in gt["annotations"])
            value = 0.0 if has_gt else -1.0
            return {"kp_map": value, "kp_map_50": value, "kp_map_75": value, "kp_mar": value}
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval_faster(coco_gt, coco_dt, "keypoints", kpt_oks_sigmas=list(map(float, sigmas)),
                             print_function=lambda *a, **k: None)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float(v) for v in ev.stats]
    return {"kp_map": stats[0], "kp_map_50": stats[1], "kp_map_75": stats[2], "kp_mar": stats[5]}


def _flat(keypoints: Tensor) -> list[float]:
    return [round(float(v), 3) for v in keypoints.reshape(-1).tolist()]


class KeypointAP(Metric):
    """COCO keypoint AP (OKS) over an evaluation epoch.

    ``update(preds, targets)``: per image, ``preds[i]`` ``{boxes [D, 4] xyxy, scores [D], labels [D],
    keypoints [D, P, 3] (x, y, score)}`` and ``targets[i]`` ``{boxes [K, 4] xyxy, labels [K], keypoints
    [K, P, 3] (x, y, v)}``, all in the pixels of the image files (as the box mAP's inputs; extra keys
    are ignored). ``compute()``: ``{kp_map, kp_map_50, kp_map_75, kp_mar}`` as 0-dim tensors (see
    :func:`coco_keypoint_ap`). ``sigmas``: one OKS sigma per keypoint.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, sigmas: Sequence[float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sigmas = [float(s) for s in sigmas]
        for name in ("pred_boxes", "pred_scores", "pred_labels", "pred_keypoints", "gt_boxes", "gt_labels",
                     "gt_keypoints"):
            self.add_state(name, default=[], dist_reduce_fx=None)

    def update(self, preds: list[dict[str, Tensor]], targets: list[dict[str, Tensor]]) -> None:
        p_count = len(self.sigmas)
        for p, t in zip(preds, targets):
            for kp, what in ((p["keypoints"], "prediction"), (t["keypoints"], "target")):
                if kp.ndim != 3 or kp.shape[1:] != (p_count, 3):
                    raise ValueError(f"{what} keypoints must be [N, {p_count}, 3] (one sigma per keypoint), "
                                     f"got {list(kp.shape)}")
            self.pred_boxes.append(p["boxes"].detach().float().reshape(-1, 4))
            self.pred_scores.append(p["scores"].detach().float().reshape(-1))
            self.pred_labels.append(p["labels"].detach().long().reshape(-1))
            self.pred_keypoints.append(p["keypoints"].detach().float())
            self.gt_boxes.append(t["boxes"].detach().float().reshape(-1, 4))
            self.gt_labels.append(t["labels"].detach().long().reshape(-1))
            self.gt_keypoints.append(t["keypoints"].detach().float())

    def coco_dicts(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The ground truth as a COCO person-keypoints dict (area: the box's) and the detections as
        COCO results, image ``i`` of the epoch with id ``i``, category id = class index."""
        images, annotations, results, classes = [], [], [], set()
        for i, (boxes, labels, kps) in enumerate(zip(self.gt_boxes, self.gt_labels, self.gt_keypoints)):
            images.append({"id": i})
            for box, label, kp in zip(boxes.tolist(), labels.tolist(), kps.cpu()):
                w, h = box[2] - box[0], box[3] - box[1]
                classes.add(int(label))
                annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(label),
                                    "bbox": [box[0], box[1], w, h], "area": max(w * h, 0.0), "iscrowd": 0,
                                    "keypoints": _flat(kp), "num_keypoints": int((kp[:, 2] > 0).sum())})
        for i, (scores, labels, kps) in enumerate(zip(self.pred_scores, self.pred_labels, self.pred_keypoints)):
            for score, label, kp in zip(scores.tolist(), labels.tolist(), kps.cpu()):
                classes.add(int(label))
                results.append({"image_id": i, "category_id": int(label), "keypoints": _flat(kp),
                                "score": float(score)})
        gt = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in sorted(classes)]}
        return gt, results

    def compute(self) -> dict[str, Tensor]:
        gt, results = self.coco_dicts()
        return {k: torch.tensor(v) for k, v in coco_keypoint_ap(gt, results, self.sigmas).items()}
