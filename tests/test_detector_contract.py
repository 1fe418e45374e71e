"""One contract for every registered detector (as tests/test_backbones.py is for every backbone).

Parametrized over ``list_detectors()``: a newly registered detector is tested by being registered.
Each is built on a small ResNet-18 (first stages frozen) with the settings every detector shares,
``score_thresh=0`` (so that an untrained model still returns detections to check) and
``detections_per_img``, plus the size settings of ``SMALL`` where it has an entry. Checked:

* training mode returns a non-empty dict of finite fp32 scalar losses that back-propagate;
* eval mode returns per image ``boxes`` float32 ``[D, 4]`` xyxy inside the image, ``labels``
  int64 in ``[0, num_classes)``, ``scores`` float32 in [0, 1] sorted descending;
* images without boxes, in training and in eval; odd image sizes (97 x 131) in one padded batch;
* bf16 autocast (CPU, small inputs);
* ``needs_masks`` / ``needs_keypoints`` detectors get masks / keypoints in their training targets,
  refuse targets without them, and return them per detection (keypoints inside the image);
* the class states its paper and year (the generations benchmark reads them).

Detectors with ``needs_proposals`` get simple proposals: jittered ground truth, a coarse grid of
boxes and the whole image.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from visiontasks.backbones import build_backbone
from visiontasks.heads.detector import DETECTORS, Detector, build_detector, list_detectors

NUM_CLASSES = 3
NUM_KEYPOINTS = 4  # for needs_keypoints detectors: each box's corners
# smaller than the defaults, only for speed; a detector without an entry is built with its defaults
SMALL: dict[str, dict[str, Any]] = {
    "faster_rcnn": dict(anchor_sizes=(16, 32, 64), representation_size=32, rpn_pre_nms_top_n_train=100,
                        rpn_post_nms_top_n_train=30, rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20,
                        rpn_batch_size_per_image=32, box_batch_size_per_image=16),
    "mask_rcnn": dict(anchor_sizes=(16, 32, 64), representation_size=32, rpn_pre_nms_top_n_train=100,
                      rpn_post_nms_top_n_train=30, rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20,
                      rpn_batch_size_per_image=32, box_batch_size_per_image=16, mask_layers=(16, 16),
                      mask_predictor_channels=16),
    "keypoint_rcnn": dict(anchor_sizes=(16, 32, 64), representation_size=32, rpn_pre_nms_top_n_train=100,
                          rpn_post_nms_top_n_train=30, rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20,
                          rpn_batch_size_per_image=32, box_batch_size_per_image=16, keypoint_layers=(16, 16),
                          num_keypoints=NUM_KEYPOINTS),
    "fast_rcnn": dict(representation_size=32, rois_per_image=16),
    "rcnn": dict(warp_size=24, context_padding=2, representation_size=32, regions_per_batch=12, max_proposals_test=8),
    "yolov1": dict(hidden_channels=16, representation_size=32),
}
DETECTORS_UNDER_TEST = list_detectors()


def build(name: str, frozen_stages: int = 2) -> Detector:
    torch.manual_seed(0)
    backbone = build_backbone("resnet18", frozen_stages=frozen_stages)
    return build_detector(name, backbone, NUM_CLASSES, score_thresh=0.0, detections_per_img=20,
                          **SMALL.get(name, {}))


def proposals_for(images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
    """Simple proposals per image: each ground-truth box shifted by 2 px, a 3 x 3 grid of boxes
    (half the image's side each) and the whole image; xyxy pixels."""
    out = []
    for im, t in zip(images, targets):
        h, w = im.shape[-2:]
        grid = [[x * w / 4, y * h / 4, x * w / 4 + w / 2, y * h / 4 + h / 2] for y in range(3) for x in range(3)]
        boxes = torch.cat([t["boxes"] + 2.0, torch.tensor(grid + [[0.0, 0.0, w, h]])])
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        out.append(boxes)
    return out


def target(boxes: list[list[float]], labels: list[int]) -> dict[str, torch.Tensor]:
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64)}


def batch(sizes: list[tuple[int, int]], with_boxes: bool = True) -> tuple[list[torch.Tensor], list[dict]]:
    """Random normalised images of ``sizes``; two boxes per image when ``with_boxes``, else none."""
    g = torch.Generator().manual_seed(0)
    images = [torch.randn(3, h, w, generator=g) for h, w in sizes]
    if not with_boxes:
        return images, [target([], []) for _ in sizes]
    return images, [target([[2.0, 3.0, w * 0.5, h * 0.6], [w * 0.4, h * 0.3, w - 1.0, h - 2.0]], [i % 3, 2])
                    for i, (h, w) in enumerate(sizes)]


def with_masks(images: list[torch.Tensor], targets: list[dict]) -> list[dict]:
    """Targets plus ``masks`` uint8 ``[K, H, W]``: each box's ellipse (for ``needs_masks`` detectors)."""
    out = []
    for im, t in zip(images, targets):
        h, w = im.shape[-2:]
        yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        masks = [((xx - (x1 + x2) / 2) / ((x2 - x1) / 2)) ** 2 + ((yy - (y1 + y2) / 2) / ((y2 - y1) / 2)) ** 2 <= 1
                 for x1, y1, x2, y2 in t["boxes"].tolist()]
        out.append({**t, "masks": torch.stack(masks).to(torch.uint8) if masks else torch.zeros(0, h, w, dtype=torch.uint8)})
    return out


def with_keypoints(targets: list[dict]) -> list[dict]:
    """Targets plus ``keypoints`` float ``[K, 4, 3]``: each box's corners, the last one not labelled
    (v = 0, x = y = 0) and the third labelled not visible (v = 1) (for ``needs_keypoints`` detectors)."""
    out = []
    for t in targets:
        x1, y1, x2, y2 = t["boxes"].reshape(-1, 4).unbind(-1)
        kp = torch.stack([torch.stack([x1, y1]), torch.stack([x2, y1]), torch.stack([x2, y2]),
                          torch.zeros(2, len(x1))]).permute(2, 0, 1)  # [K, 4, 2]
        v = torch.tensor([2.0, 2.0, 1.0, 0.0]).expand(len(x1), 4)[..., None]
        out.append({**t, "keypoints": torch.cat([kp, v], -1)})
    return out


def run(model: Detector, images: list[torch.Tensor], targets: list[dict] | None, props: list[torch.Tensor] | None):
    if targets is not None and model.training and model.needs_masks:
        targets = with_masks(images, targets)
    if targets is not None and model.training and model.needs_keypoints:
        targets = with_keypoints(targets)
    return model(images, targets, props if model.needs_proposals else None)


def check_losses(losses: Any, model: Detector) -> None:
    assert isinstance(losses, dict) and losses, "training mode returns a non-empty dict of losses"
    for name, value in losses.items():
        assert isinstance(value, torch.Tensor) and value.ndim == 0, name
        assert value.dtype == torch.float32 and torch.isfinite(value), (name, value)
    model.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def check_detections(out: Any, images: list[torch.Tensor]) -> int:
    """The eval contract; returns the number of detections over the batch."""
    assert isinstance(out, list) and len(out) == len(images)
    for det, im in zip(out, images):
        h, w = im.shape[-2:]
        assert {"boxes", "scores", "labels"} <= set(det)
        boxes, scores, labels = det["boxes"], det["scores"], det["labels"]
        d = len(scores)
        assert boxes.dtype == torch.float32 and boxes.shape == (d, 4)
        assert scores.dtype == torch.float32 and scores.shape == (d,)
        assert labels.dtype == torch.int64 and labels.shape == (d,)
        if d:
            assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all(), boxes
            assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all(), (boxes, (h, w))
            assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all(), boxes
            assert labels.min() >= 0 and labels.max() < NUM_CLASSES, labels
            assert (scores >= 0).all() and (scores <= 1).all(), scores
            assert (scores[:-1] >= scores[1:]).all(), "scores sorted descending"
        if "masks" in det:  # instance masks (needs_masks detectors): one per detection, in the image's pixels
            assert det["masks"].shape == (d, h, w) and det["masks"].dtype in (torch.float32, torch.uint8)
            assert d == 0 or (det["masks"].min() >= 0 and det["masks"].max() <= 1)
        if "keypoints" in det:  # keypoints (needs_keypoints detectors): x, y inside the image, a score
            kp = det["keypoints"]
            assert kp.dtype == torch.float32 and kp.ndim == 3 and kp.shape[0] == d and kp.shape[2] == 3
            assert torch.isfinite(kp).all()
            assert (kp[..., 0] >= 0).all() and (kp[..., 0] <= w).all() and (kp[..., 1] >= 0).all()
            assert (kp[..., 1] <= h).all(), (kp, (h, w))
    return sum(len(det["scores"]) for det in out)


def test_every_detector_is_under_test() -> None:
    assert {"rcnn", "fast_rcnn", "faster_rcnn", "yolov1"} <= set(DETECTORS_UNDER_TEST)


@pytest.mark.parametrize("name", DETECTORS_UNDER_TEST)
def test_class_states_paper_and_year(name: str) -> None:
    factory = DETECTORS[name]
    assert isinstance(getattr(factory, "paper", None), str) and factory.paper, "set the class attribute paper"
    year = getattr(factory, "year", None)
    assert isinstance(year, int) and 1990 <= year <= 2100, "set the class attribute year"
    model = build(name)
    assert isinstance(model, Detector) and isinstance(model.needs_proposals, bool)
    assert model.num_classes == NUM_CLASSES
    assert isinstance(model.needs_masks, bool)
    if model.needs_masks:  # training without masks is refused with a message saying what to set
        model.train()
        images, targets = batch([(32, 32)])
        with pytest.raises(ValueError, match="masks"):
            model(images, targets)
        with pytest.raises(ValueError, match=r"one mask per box \(2\), got \[1, 32, 32\]"):
            model(images, [{**t, "masks": torch.zeros(1, 32, 32, dtype=torch.uint8)} for t in targets])
    assert isinstance(model.needs_keypoints, bool)
    if model.needs_keypoints:  # training without keypoints is refused with a message saying what to set
        model.train()
        images, targets = batch([(32, 32)])
        with pytest.raises(ValueError, match="keypoints: true"):
            model(images, targets)
        with pytest.raises(ValueError, match=r"one row per box \(2\), got \[1, 4, 3\]"):
            model(images, [{**t, "keypoints": torch.zeros(1, NUM_KEYPOINTS, 3)} for t in targets])


@pytest.mark.parametrize("name", DETECTORS_UNDER_TEST)
def test_train_and_eval_on_odd_sizes(name: str) -> None:
    model = build(name)
    images, targets = batch([(64, 80), (97, 131)])
    props = proposals_for(images, targets)
    model.train()
    check_losses(run(model, images, targets, props), model)
    model.eval()
    with torch.no_grad():
        out = run(model, images, None, props)
    assert check_detections(out, images) > 0, "score_thresh=0: an untrained model still detects something"


@pytest.mark.parametrize("name", DETECTORS_UNDER_TEST)
def test_images_without_boxes(name: str) -> None:
    model = build(name)
    images, targets = batch([(64, 64), (48, 72)], with_boxes=False)
    props = proposals_for(images, targets)
    model.train()
    check_losses(run(model, images, targets, props), model)
    model.eval()
    with torch.no_grad():
        check_detections(run(model, [torch.zeros_like(im) for im in images], None, props), images)


@pytest.mark.parametrize("name", DETECTORS_UNDER_TEST)
def test_bf16_autocast(name: str) -> None:
    # bf16 is emulated on CPUs without AVX512-BF16 (a conv backward takes seconds): small inputs and
    # a frozen backbone (its backward under bf16 is the backbone's business); the heads learn
    model = build(name, frozen_stages=5)
    images, targets = batch([(32, 48), (32, 40)])
    props = proposals_for(images, targets)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = run(model, images, targets, props)
    check_losses(losses, model)
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = run(model, images, None, props)
    check_detections(out, images)


@pytest.mark.parametrize("name", [n for n in DETECTORS_UNDER_TEST if DETECTORS[n].needs_proposals])
def test_proposal_detectors_refuse_missing_proposals(name: str) -> None:
    model = build(name).eval()
    images, _ = batch([(32, 32)])
    with pytest.raises(ValueError, match="proposals"):
        model(images)
    with pytest.raises(ValueError, match="proposal"):
        model(images, None, [])


@pytest.mark.parametrize("name", DETECTORS_UNDER_TEST)
def test_eval_with_geometry_returns_original_pixels(name: str) -> None:
    """With the resize geometry in the targets (``image_box``, ``orig_size``), eval detections are in
    the pixels of the original files: here a 64 x 80 letterbox of a 100 x 200 (H x W) image."""
    model = build(name).eval()
    images, targets = batch([(64, 80)])
    props = proposals_for(images, targets)
    geometry = [{**targets[0], "image_box": torch.tensor([0.0, 12.0, 80.0, 52.0]), "orig_size": (100, 200)}]
    with torch.no_grad():
        plain = run(model, images, None, props)[0]
        mapped = run(model, images, geometry, props)[0]
    assert len(plain["boxes"]) > 0
    expected = plain["boxes"].clone()
    expected[:, 0::2] = (expected[:, 0::2] / 0.4).clamp(0, 200)  # 80 px wide <- 200 px
    expected[:, 1::2] = ((expected[:, 1::2] - 12.0) / 0.4).clamp(0, 100)  # rows 12..52 <- 100 px
    torch.testing.assert_close(mapped["boxes"], expected)
    if "masks" in plain:  # instance masks are pasted in the file's pixels too
        assert plain["masks"].shape[-2:] == (64, 80) and mapped["masks"].shape[-2:] == (100, 200)
    if "keypoints" in plain:  # keypoints are mapped as the boxes, their score unchanged
        expected_kp = plain["keypoints"].clone()
        expected_kp[..., 0] = (expected_kp[..., 0] / 0.4).clamp(0, 200)
        expected_kp[..., 1] = ((expected_kp[..., 1] - 12.0) / 0.4).clamp(0, 100)
        torch.testing.assert_close(mapped["keypoints"], expected_kp)
    assert torch.equal(mapped["scores"], plain["scores"]) and torch.equal(mapped["labels"], plain["labels"])


@pytest.mark.parametrize("name", DETECTORS_UNDER_TEST)
def test_unknown_setting_names_the_accepted_ones(name: str) -> None:
    from visiontasks.errors import UnknownNameError
    from visiontasks.heads.detector import detector_settings

    assert "score_thresh" in detector_settings(name) and "detections_per_img" in detector_settings(name)
    with pytest.raises(UnknownNameError, match=r"'max_detections'; available: .*; did you mean 'detections_per_img'"):
        build_detector(name, build_backbone("resnet18"), NUM_CLASSES, max_detections=5)
