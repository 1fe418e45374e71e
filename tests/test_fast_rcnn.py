"""Fast R-CNN / SPPnet detector: contract, pooling, empty cases, tiny overfit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from visiontasks.backbones import build_backbone
from visiontasks.data.proposals import SelectiveSearchSettings, selective_search
from visiontasks.data.shapes import render_scene
from visiontasks.heads.detector import build_detector, list_detectors
from visiontasks.heads.fast_rcnn import FastRCNN, RoIMaxPool, SpatialPyramidRoIPool

MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


def tiny_scenes(n: int = 2, size: int = 64):
    """``n`` scenes with two non-overlapping shapes each: normalised images, targets, proposals."""
    imgs, targets, props, seed = [], [], [], 0
    while len(imgs) < n:
        seed += 1
        img, inst = render_scene(np.random.default_rng(seed), size, size, 3, max_objects=2, min_objects=2,
                                 size_range=(0.15, 0.3))
        boxes = torch.tensor([i.box for i in inst], dtype=torch.float32).reshape(-1, 4)
        if len(inst) < 2 or box_iou(boxes, boxes).fill_diagonal_(0).max() > 0:
            continue
        imgs.append((torch.from_numpy(img).permute(2, 0, 1).float() / 255 - MEAN) / STD)
        targets.append({"boxes": boxes, "labels": torch.tensor([i.label for i in inst])})
        props.append(torch.from_numpy(selective_search(img, SelectiveSearchSettings(mode="single", max_boxes=50))))
    return imgs, targets, props


def empty_target():
    return {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}


def check_detections(out, images, num_classes):
    assert len(out) == len(images)
    for o, im in zip(out, images):
        assert set(o) == {"boxes", "scores", "labels"}
        assert o["boxes"].dtype == torch.float32 and o["boxes"].shape[1:] == (4,)
        assert o["scores"].dtype == torch.float32 and o["labels"].dtype == torch.int64
        assert len(o["boxes"]) == len(o["scores"]) == len(o["labels"])
        if len(o["labels"]):
            assert o["labels"].min() >= 0 and o["labels"].max() < num_classes
            assert (o["boxes"][:, 2] <= im.shape[-1] + 1e-3).all() and (o["boxes"][:, 3] <= im.shape[-2] + 1e-3).all()


def small(**kw):
    return build_detector("fast_rcnn", build_backbone("resnet18"), 3, representation_size=64, **kw)


def test_registered_and_needs_proposals():
    assert "fast_rcnn" in list_detectors()
    m = small()
    assert isinstance(m, FastRCNN) and m.needs_proposals
    with pytest.raises(ValueError, match="proposals"):
        m.eval()(torch.zeros(1, 3, 32, 32).unbind(0))


@pytest.mark.parametrize("pool", ["roi", "spp"])
def test_train_and_eval_contract_fp32_and_bf16(pool):
    torch.manual_seed(0)
    imgs, targets, props = tiny_scenes()
    imgs[1] = imgs[1][:, :, :48]  # sizes may differ within a batch
    m = small(roi_pool=pool)
    for dtype in (None, torch.bfloat16):
        m.train()
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            losses = m(imgs, targets, props)
        assert set(losses) == {"loss_classifier", "loss_box_reg"}
        assert all(v.dtype == torch.float32 and v.ndim == 0 and torch.isfinite(v) for v in losses.values())
        sum(losses.values()).backward()
        m.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            check_detections(m(imgs, None, props), imgs, 3)


def test_roi_max_pool_and_spatial_pyramid_values():
    feat = torch.randn(1, 5, 8, 8)
    # the whole 8x8 map at stride 16 (roi_pool counts the end cell inclusively, as Caffe did)
    box = [torch.tensor([[0.0, 0.0, 112.0, 112.0]])]
    spp = SpatialPyramidRoIPool((1, 2, 4), 1 / 16)
    out = spp(feat, box)
    assert out.shape == (1, 5 * 21) and spp.out_features(5) == 5 * 21
    torch.testing.assert_close(out[0, :5], feat.amax((2, 3))[0])  # level 1 = global max
    quad = feat[0, :, :4, :4].amax((1, 2))  # level 2, top-left bin
    torch.testing.assert_close(out[0, 5:25].reshape(5, 4)[:, 0], quad)
    roi = RoIMaxPool(4, 1 / 16)(feat, box)
    torch.testing.assert_close(roi.reshape(5, 4, 4), torch.nn.functional.max_pool2d(feat, 2)[0])


def test_pools_the_stride_16_output_and_drops_deeper_stages():
    m = small()
    assert m.feature_name == "layer3" and "layer4" not in m.backbone.stages
    assert m.roi_heads.box_roi_pool.spatial_scale == 1 / 16
    m = small(feature="layer4")
    assert m.feature_name == "layer4" and m.roi_heads.box_roi_pool.spatial_scale == 1 / 32
    with pytest.raises(ValueError, match="no output"):
        small(feature="layer9")


def test_zero_proposals_and_background_only_images():
    torch.manual_seed(0)
    imgs, targets, props = tiny_scenes()
    m = small()
    m.train()
    # an image with objects but no proposal, and a background-only image with proposals
    losses = m(imgs, [targets[0], empty_target()], [torch.zeros(0, 4), props[1]])
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    # a batch of background-only images without any proposal: still a (finite) loss on every param
    m.zero_grad()
    losses = m(imgs, [empty_target(), empty_target()], [torch.zeros(0, 4), torch.zeros(0, 4)])
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in m.roi_heads.parameters())
    m.eval()
    with torch.no_grad():
        out = m(imgs, None, [torch.zeros(0, 4), props[1]])
    check_detections(out, imgs, 3)
    assert len(out[0]["boxes"]) == 0


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["roi"])  # spp: same head and loss, pooling covered above
def test_tiny_overfit(pool):
    torch.manual_seed(0)
    imgs, targets, props = tiny_scenes()  # 64 px: 4x4 cells at stride 16
    m = build_detector("fast_rcnn", build_backbone("resnet18"), 3, representation_size=128, roi_pool=pool)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    first = None
    for _ in range(30):
        m.train()
        loss = sum(m(imgs, targets, props).values())
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    m.eval()
    with torch.no_grad():
        out = m(imgs, None, props)
    for o, t in zip(out, targets):
        top = slice(0, 2 * len(t["boxes"]))
        for box, label in zip(t["boxes"], t["labels"]):
            same = o["labels"][top] == label
            assert same.any(), (o, t)
            assert box_iou(box[None], o["boxes"][top][same]).max() >= 0.5, (o, t)
