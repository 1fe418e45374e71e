"""Mask R-CNN: the same model as torchvision's (parameters, copied weights -> same boxes and masks),
its weights loading, and its mask branch learning the pixels of an object."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from visiontasks.backbones import build_backbone
from visiontasks.heads.detector import build_detector


def _torchvision_mask_rcnn(num_classes: int = 91, size: int = 96, **kw):
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    # the transform made a no-op: mean 0, std 1, min = max size = the image side
    return maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes, min_size=size,
                                 max_size=size, image_mean=[0.0] * 3, image_std=[1.0] * 3, **kw)


def test_resnet50_fpn_equals_torchvision_with_its_weights(tmp_path: Path) -> None:
    """``maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)`` (BatchNorm, 91 classes with the
    background) and our ``mask_rcnn`` on ``resnet50`` with ``fpn: true`` and 90 classes: the same
    parameter count; torchvision's state_dict loaded through ``weights: <file>`` gives the same boxes,
    scores, labels (ours 0-based) and pasted masks."""
    torch.manual_seed(0)
    tv = _torchvision_mask_rcnn(box_score_thresh=0.0, rpn_post_nms_top_n_test=100, box_detections_per_img=20)
    theirs = sum(p.numel() for p in tv.parameters())
    torch.save(tv.state_dict(), tmp_path / "maskrcnn.pth")
    ours = build_detector("mask_rcnn", build_backbone("resnet50"), 90, fpn=True, score_thresh=0.0,
                          rpn_post_nms_top_n_test=100, detections_per_img=20, weights=str(tmp_path / "maskrcnn.pth"))
    assert sum(p.numel() for p in ours.parameters()) == theirs == 44_454_513
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
        assert x["masks"].shape == (len(x["boxes"]), 96, 96) and x["masks"].dtype == torch.float32
        torch.testing.assert_close(x["masks"], y["masks"][:, 0])


def test_other_class_count_reinitialises_box_and_mask_predictors(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tv = _torchvision_mask_rcnn()
    torch.save(tv.state_dict(), tmp_path / "maskrcnn.pth")
    with pytest.warns(UserWarning, match="90 classes, the model 3: box_predictor .* and mask_predictor"):
        ours = build_detector("mask_rcnn", build_backbone("resnet50"), 3, fpn=True,
                              weights=str(tmp_path / "maskrcnn.pth"))
    assert ours.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 4
    torch.testing.assert_close(ours.roi_heads.mask_head.state_dict()["0.0.weight"],
                               tv.roi_heads.mask_head.state_dict()["0.0.weight"])
    torch.testing.assert_close(ours.roi_heads.mask_predictor.conv5_mask.weight,
                               tv.roi_heads.mask_predictor.conv5_mask.weight)
