"""R-CNN detector: warping with context, stages, SVM/softmax scoring, empty cases, tiny overfit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from visiontasks.backbones import build_backbone
from visiontasks.data.proposals import SelectiveSearchSettings, selective_search
from visiontasks.data.shapes import render_scene
from visiontasks.heads.detector import build_detector, list_detectors
from visiontasks.heads.rcnn import RCNN, context_boxes, load_detector_weights

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


def small(**kw) -> RCNN:
    kw = {"warp_size": 32, "context_padding": 2, "representation_size": 64, "regions_per_batch": 32, **kw}
    return build_detector("rcnn", build_backbone("resnet18"), 3, **kw)


def check_detections(out, images, num_classes):
    assert len(out) == len(images)
    for o, im in zip(out, images):
        assert o["boxes"].dtype == torch.float32 and o["boxes"].shape[1:] == (4,)
        assert o["scores"].dtype == torch.float32 and o["labels"].dtype == torch.int64
        assert len(o["boxes"]) == len(o["scores"]) == len(o["labels"])
        if len(o["labels"]):
            assert 0 <= o["labels"].min() and o["labels"].max() < num_classes
            assert ((o["scores"] >= 0) & (o["scores"] <= 1)).all()
            assert (o["boxes"][:, 2] <= im.shape[-1] + 1e-3).all() and (o["boxes"][:, 3] <= im.shape[-2] + 1e-3).all()


def test_context_padding_geometry():
    box = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    out = context_boxes(box, warp_size=227, padding=16)
    # the original box spans 227 - 2 * 16 of the 227 warped pixels, centred
    scale = 227 / (227 - 32)
    torch.testing.assert_close(out, torch.tensor([[20 - 10 * scale, 40 - 20 * scale, 20 + 10 * scale, 40 + 20 * scale]]))
    torch.testing.assert_close(context_boxes(box, 64, 0), box)
    with pytest.raises(ValueError, match="context padding"):
        context_boxes(box, 32, 16)


def test_warp_crops_the_region():
    m = small(context_padding=0).eval()
    img = torch.zeros(1, 3, 40, 40)
    img[:, :, 10:20, 10:20] = 1.0
    warped = m.warp(img, [torch.tensor([[10.0, 10.0, 20.0, 20.0], [22.0, 22.0, 40.0, 40.0]])])
    assert warped.shape == (2, 3, 32, 32)
    assert warped[0].mean() > 0.95 and warped[1].abs().max() == 0


def test_registered_and_validates_options():
    assert "rcnn" in list_detectors()
    assert small().needs_proposals
    with pytest.raises(ValueError, match="stage"):
        small(stage="everything")
    with pytest.raises(ValueError, match="score_mode"):
        small(score_mode="hinge")


@pytest.mark.parametrize("score_mode", ["svm", "softmax"])
def test_train_and_eval_contract_fp32_and_bf16(score_mode):
    torch.manual_seed(0)
    imgs, targets, props = tiny_scenes()
    imgs[1] = imgs[1][:, :, :48]
    targets[1]["boxes"][:, 2].clamp_(max=48)
    m = small(score_mode=score_mode, max_proposals_test=10, regions_per_batch=16)
    # bf16 on CPU is slow: once is enough (the scoring mode does not change the dtypes involved)
    for dtype in (None, torch.bfloat16) if score_mode == "svm" else (None,):
        m.train()
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            losses = m(imgs, targets, props)
        assert set(losses) == {"loss_classifier", "loss_svm", "loss_box_reg"}
        assert all(v.dtype == torch.float32 and v.ndim == 0 and torch.isfinite(v) for v in losses.values())
        m.zero_grad()
        sum(losses.values()).backward()
        assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
        m.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            check_detections(m(imgs, None, props), imgs, 3)


def test_svm_and_regression_losses_do_not_reach_the_cnn():
    torch.manual_seed(0)
    imgs, targets, props = tiny_scenes()
    m = small()
    m.train()
    losses = m(imgs, targets, props)
    (losses["loss_svm"] + losses["loss_box_reg"]).backward()
    assert all(p.grad is None for p in m.backbone.parameters())
    assert m.svm.weight.grad is not None and m.bbox_pred.weight.grad is not None


def test_zero_proposals_and_background_only_images():
    torch.manual_seed(0)
    imgs, targets, props = tiny_scenes()
    m = small()
    m.train()
    losses = m(imgs, [targets[0], empty_target()], [torch.zeros(0, 4), props[1]])
    assert all(torch.isfinite(v) for v in losses.values())
    losses = m(imgs, [empty_target(), empty_target()], [torch.zeros(0, 4), torch.zeros(0, 4)])
    assert all(torch.isfinite(v) for v in losses.values())
    m.zero_grad()
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    m.eval()
    with torch.no_grad():
        out = m(imgs, None, [torch.zeros(0, 4), props[1]])
    check_detections(out, imgs, 3)
    assert len(out[0]["boxes"]) == 0


def test_stages_and_init_weights(tmp_path):
    torch.manual_seed(0)
    imgs, targets, props = tiny_scenes()
    stage1 = small(stage="finetune")
    assert not stage1.svm.weight.requires_grad and not stage1.bbox_pred.weight.requires_grad
    stage1.train()
    assert set(stage1(imgs, targets, props)) == {"loss_classifier"}
    # a Lightning-like checkpoint: weights under a prefix, with other entries around them
    torch.save({"state_dict": {f"detector.{k}": v for k, v in stage1.state_dict().items()}, "epoch": 3},
               tmp_path / "stage1.ckpt")
    stage2 = small(stage="svm", init_weights=str(tmp_path / "stage1.ckpt"))
    for (k, a), b in zip(stage1.state_dict().items(), stage2.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    stage2.train()
    assert not stage2.backbone.training  # frozen BatchNorm statistics
    frozen = {k: v.clone() for k, v in stage2.backbone.state_dict().items()}
    opt = torch.optim.SGD([p for p in stage2.parameters() if p.requires_grad], lr=0.1)
    losses = stage2(imgs, targets, props)
    assert set(losses) == {"loss_svm", "loss_box_reg"}
    sum(losses.values()).backward()
    opt.step()
    for k, v in stage2.backbone.state_dict().items():
        torch.testing.assert_close(v, frozen[k], msg=k)
    with pytest.warns(UserWarning, match="kept their initial values"):
        load_detector_weights(small(), _partial(tmp_path, stage1))


def _partial(tmp_path, model):
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("svm")}
    torch.save(state, tmp_path / "partial.pt")
    return tmp_path / "partial.pt"


@pytest.mark.slow
def test_tiny_overfit():
    torch.manual_seed(0)
    imgs, targets, props = tiny_scenes()
    m = small(representation_size=128, dropout=0.0)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    first = None
    for _ in range(40):
        m.train()
        losses = m(imgs, targets, props)
        first = first or {k: v.item() for k, v in losses.items()}
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    assert losses["loss_classifier"] < 0.2 * first["loss_classifier"]
    assert losses["loss_svm"] < 0.5 * first["loss_svm"]
    m.eval()
    with torch.no_grad():
        out = m(imgs, None, props)
    for o, t in zip(out, targets):
        top = slice(0, 2 * len(t["boxes"]))
        for box, label in zip(t["boxes"], t["labels"]):
            same = o["labels"][top] == label
            assert same.any(), (o, t)
            assert box_iou(box[None], o["boxes"][top][same]).max() >= 0.5, (o, t)
