"""Keypoint R-CNN: the same model as torchvision's (parameters, copied weights -> same boxes, scores
and keypoints), its weights loading, its keypoint mapping to file pixels, and its keypoint branch
learning where an object's keypoints are."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from visiontasks.backbones import build_backbone
from visiontasks.heads.detector import build_detector
from visiontasks.ops import detections_to_original, keypoints_to_original


def _torchvision_keypoint_rcnn(size: int = 96, **kw):
    from torchvision.models.detection import keypointrcnn_resnet50_fpn

    # the transform made a no-op: mean 0, std 1, min = max size = the image side
    return keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, min_size=size, max_size=size,
                                     image_mean=[0.0] * 3, image_std=[1.0] * 3, **kw)


def test_resnet50_fpn_equals_torchvision_with_its_weights(tmp_path: Path) -> None:
    """``keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None)`` (BatchNorm, 2 classes with
    the background, 17 keypoints) and our ``keypoint_rcnn`` on ``resnet50`` with ``fpn: true``, one
    class: the same parameter count; torchvision's state_dict loaded through ``weights: <file>`` gives
    the same boxes, scores, labels (ours 0-based) and keypoints (x, y; our third column is
    torchvision's ``keypoints_scores``)."""
    torch.manual_seed(0)
    tv = _torchvision_keypoint_rcnn(box_score_thresh=0.0, rpn_post_nms_top_n_test=100, box_detections_per_img=20)
    theirs = sum(p.numel() for p in tv.parameters())
    torch.save(tv.state_dict(), tmp_path / "keypointrcnn.pth")
    ours = build_detector("keypoint_rcnn", build_backbone("resnet50"), 1, fpn=True, score_thresh=0.0,
                          rpn_post_nms_top_n_test=100, detections_per_img=20,
                          weights=str(tmp_path / "keypointrcnn.pth"))
    # with BatchNorm (the 59,137,258 of torchvision's COCO weights' card count FrozenBatchNorm, no parameters)
    assert sum(p.numel() for p in ours.parameters()) == theirs == 59_190_378
    g = torch.Generator().manual_seed(1)
    images = [torch.randn(3, 96, 96, generator=g) for _ in range(2)]
    ours.eval(), tv.eval()
    with torch.no_grad():
        a, b = ours(images), tv(images)
    for x, y in zip(a, b):
        assert len(x["boxes"]) > 0
        torch.testing.assert_close(x["boxes"], y["boxes"])
        torch.testing.assert_close(x["scores"], y["scores"])
        assert torch.equal(x["labels"] + 1, y["labels"])  # torchvision: 0 = background
        assert x["keypoints"].shape == (len(x["boxes"]), 17, 3) and x["keypoints"].dtype == torch.float32
        torch.testing.assert_close(x["keypoints"][..., :2], y["keypoints"][..., :2])
        torch.testing.assert_close(x["keypoints"][..., 2], y["keypoints_scores"])


def test_other_class_and_keypoint_counts_reinitialise_their_predictors(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tv = _torchvision_keypoint_rcnn()
    torch.save(tv.state_dict(), tmp_path / "keypointrcnn.pth")
    with pytest.warns(UserWarning) as caught:
        ours = build_detector("keypoint_rcnn", build_backbone("resnet50"), 3, fpn=True, num_keypoints=4,
                              weights=str(tmp_path / "keypointrcnn.pth"))
    messages = " ".join(str(w.message) for w in caught)
    assert "1 classes, the model 3: box_predictor" in messages
    assert "17 keypoints, the model 4: keypoint_predictor (kps_score_lowres) re-initialised" in messages
    assert ours.roi_heads.keypoint_predictor.kps_score_lowres.out_channels == 4
    torch.testing.assert_close(ours.roi_heads.keypoint_head.state_dict()["14.weight"],
                               tv.roi_heads.keypoint_head.state_dict()["14.weight"])


def test_weights_of_another_model_are_refused(tmp_path: Path) -> None:
    from visiontasks.errors import InvalidInputError

    torch.manual_seed(0)
    body = build_backbone("resnet18")
    small = build_detector("keypoint_rcnn", body, 1, fpn=True, keypoint_layers=(8, 8), representation_size=16)
    torch.save({f"backbone.body.{k}": v for k, v in small.state_dict().items()}, tmp_path / "other.pth")
    with pytest.raises(InvalidInputError, match="keypointrcnn_resnet50_fpn"):
        build_detector("keypoint_rcnn", build_backbone("resnet50"), 1, fpn=True, weights=str(tmp_path / "other.pth"))


def test_keypoints_follow_the_boxes_to_file_pixels() -> None:
    """A 64 x 80 letterbox (rows 12..52) of a 100 x 200 (H x W) file: x / 0.4, (y - 12) / 0.4, the
    third column unchanged; ``detections_to_original`` maps a detection's keypoints the same way."""
    kp = torch.tensor([[[8.0, 12.0, 2.0], [40.0, 32.0, -1.5], [80.0, 60.0, 1.0]]])
    box = torch.tensor([0.0, 12.0, 80.0, 52.0])
    got = keypoints_to_original(kp, box, (100, 200))
    torch.testing.assert_close(got, torch.tensor([[[20.0, 0.0, 2.0], [100.0, 50.0, -1.5], [200.0, 100.0, 1.0]]]))
    det = {"boxes": torch.tensor([[8.0, 12.0, 40.0, 32.0]]), "scores": torch.ones(1),
           "labels": torch.zeros(1, dtype=torch.long), "keypoints": kp}
    mapped = detections_to_original([det], [{"image_box": box, "orig_size": (100, 200)}])[0]
    torch.testing.assert_close(mapped["keypoints"], got)
    torch.testing.assert_close(mapped["boxes"], torch.tensor([[20.0, 0.0, 100.0, 50.0]]))


def test_keypoint_branch_learns_the_corners_of_a_square() -> None:
    """A small single-level Keypoint R-CNN overfits one image of a bright square whose corners are
    its 4 keypoints (one labelled not visible, v = 1, and one not labelled, v = 0): after training,
    given the ground-truth box, the three labelled keypoints land within 3 px."""
    torch.manual_seed(0)
    image = torch.full((3, 64, 64), -1.0)
    image[:, 16:48, 20:52] = 1.0
    kp = torch.tensor([[[20.0, 16.0, 2.0], [52.0, 16.0, 2.0], [52.0, 48.0, 1.0], [0.0, 0.0, 0.0]]])
    targets = [{"boxes": torch.tensor([[20.0, 16.0, 52.0, 48.0]]), "labels": torch.zeros(1, dtype=torch.long),
                "keypoints": kp}]
    model = build_detector("keypoint_rcnn", build_backbone("resnet18", frozen_stages=5), 1, feature_stride=8,
                           num_keypoints=4, keypoint_layers=(32, 32), representation_size=32,
                           anchor_sizes=(32,), rpn_batch_size_per_image=16, box_batch_size_per_image=8,
                           box_positive_fraction=0.5)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    for _ in range(60):
        losses = model([image], targets)
        assert torch.isfinite(losses["loss_keypoint"])
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        feats = model.features(image[None])
        det = model.detect_more(feats, [(64, 64)], [{"boxes": targets[0]["boxes"], "scores": torch.ones(1),
                                                     "labels": torch.zeros(1, dtype=torch.long)}])[0]
    err = (det["keypoints"][0, :3, :2] - kp[0, :3, :2]).norm(dim=-1)
    assert (err < 3.0).all(), err
