"""The detector ladder: R-CNN -> Fast R-CNN -> Faster R-CNN -> YOLO (and SSD, Mask R-CNN), each
timed on the same images with the same backbone, the settings of their shipped shapes configs."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ._registry import Budget, ClaimResult, claim, verdict_of
from ._train import one_thread

SIDE = 128  # the shapes configs' image side
# model_kwargs of configs/detection/*_shapes.yaml (the configs are not part of an installed package)
_TWO_STAGE = {"fpn": False, "feature_stride": 8, "anchor_sizes": [24, 48, 96], "aspect_ratios": [0.5, 1.0, 2.0],
              "roi_op": "pool", "representation_size": 256, "rpn_pre_nms_top_n_train": 600,
              "rpn_post_nms_top_n_train": 300, "rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 100,
              "rpn_batch_size_per_image": 128, "box_batch_size_per_image": 64}
LADDER: dict[str, tuple[str, dict[str, Any]]] = {
    "R-CNN (2014)": ("rcnn", {"stage": "all", "score_mode": "svm", "warp_size": 48, "context_padding": 3,
                              "representation_size": 256, "regions_per_batch": 64, "fg_fraction": 0.25,
                              "max_proposals_test": 2000, "test_chunk": 512, "nms_thresh": 0.3}),
    "Fast R-CNN (2015)": ("fast_rcnn", {"roi_pool": "roi", "pool_size": 7, "representation_size": 256,
                                        "rois_per_image": 64, "fg_fraction": 0.25, "max_proposals_train": 2000,
                                        "max_proposals_test": 2000, "nms_thresh": 0.3}),
    "Faster R-CNN (2015)": ("faster_rcnn", _TWO_STAGE),
    "YOLOv1 (2016)": ("yolov1", {"grid_size": 16, "boxes_per_cell": 2, "feature_stride": 8, "head": "conv",
                                 "hidden_channels": 128, "dropout": 0.0, "activation": "sigmoid",
                                 "lambda_coord": 5.0, "lambda_noobj": 0.5}),
    "SSD (2016)": ("ssd", {"min_stride": 8, "image_size": SIDE, "extra_channels": [256, 128], "s_min": 0.2,
                           "s_max": 0.9, "score_thresh": 0.01, "nms_thresh": 0.45, "detections_per_img": 100}),
    "Mask R-CNN (2017)": ("mask_rcnn", {**_TWO_STAGE, "box_batch_size_per_image": 32, "detections_per_img": 20,
                                        "mask_roi_output_size": 14, "mask_layers": [32, 32, 32, 32],
                                        "mask_predictor_channels": 32}),
}
IMAGES = {"tiny": 1, "small": 5, "full": 20}


TRAIN_BATCH, TRAIN_IMAGES = 8, 400  # the shapes configs' batch and training split: s/epoch = step x 50


def _scenes(n: int) -> list[tuple[np.ndarray, dict[str, torch.Tensor]]]:
    """``n`` generated scenes and their targets (boxes xyxy px, 0-based labels, masks)."""
    from visiontasks.data.shapes import render_scene

    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        image, objects = render_scene(rng, SIDE, SIDE, 3)
        out.append((image, {"boxes": torch.tensor([o.box for o in objects], dtype=torch.float32),
                            "labels": torch.tensor([o.label for o in objects]),
                            "masks": torch.from_numpy(np.stack([o.mask for o in objects])).to(torch.uint8)}))
    return out


def _train_step_ms(detector: Any, images: list[torch.Tensor], targets: list[dict], proposals: list | None) -> float:
    """Milliseconds of one SGD step (forward with targets, backward, update) on one batch, after a warm-up
    step; the median of three."""
    detector.train()
    opt = torch.optim.SGD(detector.parameters(), lr=1e-3, momentum=0.9)
    times = []
    for k in range(4):
        start = time.perf_counter()
        losses = detector(images, targets, proposals)
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt.step()
        if k:
            times.append(1000 * (time.perf_counter() - start))
    detector.eval()
    return float(np.median(times))


def _ms(fn: Any, inputs: list[Any]) -> float:
    """Mean milliseconds of ``fn(x)`` over ``inputs`` after one warm-up call."""
    fn(inputs[0])
    start = time.perf_counter()
    for x in inputs:
        fn(x)
    return 1000 * (time.perf_counter() - start) / len(inputs)


@claim("detector_ladder", kind="timing")
def detector_ladder(budget: Budget) -> ClaimResult:
    """R-CNN -> Fast R-CNN -> Faster R-CNN -> YOLO: each generation detects faster than the last (R-CNN runs the
    CNN on every warped proposal, Fast R-CNN once per image and pools the proposals from its map, Faster R-CNN
    proposes with its own RPN instead of selective search, YOLO has no proposal stage at all).

    Measures: test time per image, one image at a time on one CPU thread, of the six registered detectors on the
    same ResNet-18 (random weights, eval mode), and their training time per epoch (one SGD step on a batch of 8
    scenes with their targets, median of 3 after a warm-up, times the 50 batches of the shapes configs' 400
    training images; proposals precomputed, as the proposal cache does) with their shipped shapes configs' settings, on the same
    generated 128 px shapes images; selective search (fast mode, up to 2000 boxes, as the configs' proposals)
    timed apart and counted for R-CNN and Fast R-CNN; parameters. Accuracy is not measured here (see
    docs/detection_generations.md: it needs trained weights)
    Paper: Girshick et al. 2014; Girshick 2015 (Fast R-CNN: 213x faster at test than R-CNN on VGG-16); Ren et al.
    2015; Redmon et al. 2016; Liu et al. 2016; He et al. 2017
    Notes: seeds/000_4943f345b6f0fdd0.txt:226-270, seeds/002_fe5bbf9b65554f16.txt:219-240
    """
    from visiontasks.backbones import build_backbone
    from visiontasks.data.proposals import SelectiveSearchSettings, selective_search
    from visiontasks.heads import build_detector
    from visiontasks.preprocessing import IMAGENET_MEAN, IMAGENET_STD

    scenes = _scenes(max(IMAGES[budget], TRAIN_BATCH))
    pictures = [p for p, _ in scenes[: IMAGES[budget]]]
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    tensors = [(torch.from_numpy(p).permute(2, 0, 1).float() / 255 - mean) / std for p, _ in scenes]
    batch, targets = tensors[:TRAIN_BATCH], [t for _, t in scenes[:TRAIN_BATCH]]
    settings = SelectiveSearchSettings(mode="fast", max_boxes=2000)
    rows, totals = [], {}
    with one_thread():
        with torch.no_grad():
            search_ms = _ms(lambda p: selective_search(p, settings), pictures)
        boxes = [torch.from_numpy(selective_search(p, settings)) for p, _ in scenes]
        for label, (name, kwargs) in LADDER.items():
            torch.manual_seed(0)
            detector = build_detector(name, build_backbone("resnet18"), 3, **kwargs)
            proposals = boxes[:TRAIN_BATCH] if detector.needs_proposals else None
            step_ms = _train_step_ms(detector, batch, targets, proposals)
            with torch.no_grad():
                if detector.needs_proposals:
                    net_ms = _ms(lambda i: detector([tensors[i]], None, [boxes[i]]), list(range(len(pictures))))
                    prop_ms = search_ms
                else:
                    net_ms, prop_ms = _ms(lambda x: detector([x]), tensors[: len(pictures)]), 0.0
            totals[label] = net_ms + prop_ms
            rows.append({"detector": label, "model": name,
                         "params (M)": round(sum(p.numel() for p in detector.parameters()) / 1e6, 2),
                         "train s/epoch": round(step_ms / 1000 * TRAIN_IMAGES / TRAIN_BATCH, 1),
                         "proposals ms/img": round(prop_ms, 1), "network ms/img": round(net_ms, 1),
                         "total ms/img": round(net_ms + prop_ms, 1)})
    base = totals["R-CNN (2014)"]
    for row in rows:
        row["speed-up vs R-CNN"] = f"{base / row['total ms/img']:.1f}x"
    chain = ["R-CNN (2014)", "Fast R-CNN (2015)", "Faster R-CNN (2015)", "YOLOv1 (2016)"]
    checks = [totals[a] > totals[b] for a, b in zip(chain, chain[1:])]
    order = " > ".join(f"{c.split(' (')[0]} {totals[c]:.0f}" for c in chain)
    extra = ", ".join(f"{c.split(' (')[0]} {totals[c]:.0f}" for c in ("SSD (2016)", "Mask R-CNN (2017)"))
    return ClaimResult(rows, verdict_of(checks),
                       f"ms per image on one thread: {order} (each faster than the last: {checks}); {extra}; "
                       f"selective search alone {search_ms:.0f} ms; {len(pictures)} images of {SIDE} px")
