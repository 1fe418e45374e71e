"""Detector contracts (Faster R-CNN, YOLOv1, SSD) on several backbones, the YOLOv1 loss, the registry."""

from __future__ import annotations

import pytest
import torch

from visiontasks.backbones import build_backbone
from visiontasks.heads.detector import Detector, batch_images, build_detector, list_detectors, select_features
from visiontasks.heads.yolov1 import YOLOv1

SMALL = {
    "faster_rcnn": dict(anchor_sizes=(16, 32, 64), representation_size=64, rpn_pre_nms_top_n_train=200,
                        rpn_post_nms_top_n_train=50, rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=30,
                        rpn_batch_size_per_image=32, box_batch_size_per_image=16),
    "faster_rcnn_pool": dict(anchor_sizes=(16, 32, 64), representation_size=64, roi_op="pool",
                             rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=50,
                             rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=30,
                             rpn_batch_size_per_image=32, box_batch_size_per_image=16),
    "faster_rcnn_fpn": dict(fpn=True, fpn_channels=32, representation_size=64, rpn_pre_nms_top_n_train=100,
                            rpn_post_nms_top_n_train=50, rpn_pre_nms_top_n_test=100,
                            rpn_post_nms_top_n_test=30, rpn_batch_size_per_image=32,
                            box_batch_size_per_image=16),
    "yolov1": dict(hidden_channels=32, representation_size=64),
    "yolov1_conv": dict(head="conv", hidden_channels=32, feature="layer3"),
    "ssd": dict(image_size=64, extra_channels=[64, 32]),  # VGG backbones: the paper's conv4_3 + fc6/fc7
}


def _images_targets() -> tuple[list[torch.Tensor], list[dict]]:
    g = torch.Generator().manual_seed(0)
    images = [torch.randn(3, 64, 64, generator=g), torch.randn(3, 48, 72, generator=g)]
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0], [30.0, 30.0, 60.0, 50.0]]), "labels": torch.tensor([2, 0])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # background image
    ]
    return images, targets


def _build(kind: str, backbone: str) -> Detector:
    name = "faster_rcnn" if kind.startswith("faster_rcnn") else "ssd" if kind == "ssd" else "yolov1"
    torch.manual_seed(0)
    return build_detector(name, build_backbone(backbone), 3, **SMALL[kind])


def _check_outputs(out: list[dict], sizes: list[tuple[int, int]]) -> None:
    assert len(out) == len(sizes)
    for det, (h, w) in zip(out, sizes):
        assert set(det) == {"boxes", "scores", "labels"}
        assert det["boxes"].dtype == torch.float32 and det["scores"].dtype == torch.float32
        assert det["labels"].dtype == torch.int64
        d = len(det["scores"])
        assert det["boxes"].shape == (d, 4) and det["labels"].shape == (d,)
        if d:
            b = det["boxes"]
            assert (b[:, 0] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 1] >= 0).all() and (b[:, 3] <= h).all()
            assert (b[:, 2] >= b[:, 0]).all() and (b[:, 3] >= b[:, 1]).all()
            assert det["labels"].min() >= 0 and det["labels"].max() < 3


def test_registry_lists_both() -> None:
    assert {"faster_rcnn", "yolov1"} <= set(list_detectors())
    with pytest.raises(ValueError, match="unknown detector 'retinanet'"):
        build_detector("retinanet", build_backbone("resnet18"), 3)


@pytest.mark.parametrize("backbone", ["resnet18", "vgg11", "mobilenet_v2", "densenet121"])
@pytest.mark.parametrize("kind", ["faster_rcnn", "faster_rcnn_fpn", "yolov1", "yolov1_conv", "ssd"])
def test_forward_loss_contract(kind: str, backbone: str) -> None:
    if kind == "faster_rcnn_fpn" and backbone in ("vgg11", "densenet121"):
        pytest.skip("FPN is covered on resnet18 and mobilenet_v2 (keeps the suite fast)")
    if kind == "yolov1_conv" and backbone != "resnet18":
        pytest.skip("the conv head variant is covered on resnet18")
    model = _build(kind, backbone)
    images, targets = _images_targets()
    model.train()
    losses = model(images, targets)
    assert isinstance(losses, dict) and losses
    for name, value in losses.items():
        assert value.ndim == 0 and value.dtype == torch.float32 and torch.isfinite(value), name
    sum(losses.values()).backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads), "every backbone parameter in use gets a gradient"
    model.eval()
    with torch.no_grad():
        out = model(images)
    _check_outputs(out, [(64, 64), (48, 72)])


@pytest.mark.parametrize("kind", ["faster_rcnn_pool", "faster_rcnn_fpn", "yolov1"])
def test_bf16_autocast(kind: str) -> None:
    # bf16 is emulated (slow) on CPUs without AVX512-BF16: the smallest inputs that keep every level
    model = _build(kind, "resnet18")
    images, targets = _images_targets()
    images = [im[:, :32, :48] for im in images]
    targets[0]["boxes"] = torch.tensor([[4.0, 6.0, 30.0, 28.0]])
    targets[0]["labels"] = torch.tensor([2])
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(images, targets)
    for value in losses.values():
        assert value.dtype == torch.float32 and torch.isfinite(value)
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images)
    _check_outputs(out, [(32, 48), (32, 48)])


def test_faster_rcnn_reads_channels_and_levels_from_feature_info() -> None:
    for backbone in ("resnet18", "densenet121"):
        body = build_backbone(backbone)
        m = build_detector("faster_rcnn", body, 3, fpn=True, fpn_channels=32, representation_size=32)
        chosen = [f for f in body.feature_info if f.stride >= 4]
        assert m.feature_names == [f.name for f in chosen]
        assert [blk[0].in_channels for blk in m.fpn.inner_blocks] == [f.channels for f in chosen]
        assert m.rpn.anchor_generator.num_anchors_per_location() == [3] * (len(chosen) + 1)
        single = build_detector("faster_rcnn", build_backbone(backbone), 3, representation_size=32)
        info = next(f for f in body.feature_info if f.name == single.feature_names[0])
        assert info.stride == 16  # default level: the deepest with stride <= 16
        assert single.rpn.head.conv[0][0].in_channels == info.channels
        assert single.rpn.anchor_generator.num_anchors_per_location() == [9]  # 3 scales x 3 ratios
        # stages deeper than the used level are not part of the model (DDP needs every param used)
        assert list(single.backbone.stages)[-1] == info.name


def test_faster_rcnn_roi_max_pool_variant() -> None:
    model = build_detector("faster_rcnn", build_backbone("resnet18"), 3, roi_op="pool", **SMALL["faster_rcnn"])
    images, targets = _images_targets()
    losses = model.train()(images, targets)
    sum(losses.values()).backward()
    with pytest.raises(ValueError, match="one level"):
        build_detector("faster_rcnn", build_backbone("resnet18"), 3, fpn=True, roi_op="pool")


def test_batch_images_pads_bottom_right() -> None:
    x, sizes = batch_images([torch.ones(3, 10, 20), torch.ones(3, 33, 5)], 32)
    assert x.shape == (2, 3, 64, 32) and sizes == [(10, 20), (33, 5)]
    assert x[0, :, :10, :20].eq(1).all() and x[0, :, 10:].eq(0).all() and x[0, :, :, 20:].eq(0).all()


def test_select_features_shares_modules_and_drops_deeper_stages() -> None:
    body = build_backbone("resnet18", frozen_stages=2)
    sub = select_features(body, ["layer2"])
    assert list(sub.stages) == ["stem", "layer1", "layer2"] and sub.out_features == ["layer2"]
    assert sub.stages["layer2"] is body.stages["layer2"]
    assert not any(p.requires_grad for p in sub.stages["layer1"].parameters())


# -- YOLOv1 loss ------------------------------------------------------------------------------------
def _reference_yolo_loss(model: YOLOv1, raw: torch.Tensor, targets: list[dict], H: int, W: int) -> dict:
    """Straightforward loops over images, cells and predictors: the paper's formula, term by term."""
    S, B, C = model.S, model.B, model.C
    out = {"loss_coord": 0.0, "loss_obj": 0.0, "loss_noobj": 0.0, "loss_cls": 0.0}
    n = raw.shape[0]
    for b in range(n):
        cells: dict[tuple[int, int], tuple[float, list[float], int]] = {}
        for box, label in zip(targets[b]["boxes"].tolist(), targets[b]["labels"].tolist()):
            x1, y1, x2, y2 = box[0] / W, box[1] / H, box[2] / W, box[3] / H
            cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
            i, j = min(int(cy * S), S - 1), min(int(cx * S), S - 1)
            if (i, j) not in cells or w * h > cells[(i, j)][0]:
                cells[(i, j)] = (w * h, [cx * S - j, cy * S - i, w**0.5, h**0.5, x1, y1, x2, y2], label)
        for i in range(S):
            for j in range(S):
                v = raw[b, i, j]
                if model.activation == "sigmoid":
                    preds = [torch.sigmoid(v[k * 5 : k * 5 + 5]) for k in range(B)]
                    probs = torch.softmax(v[B * 5 :], 0)
                else:  # the paper's linear outputs
                    preds = [v[k * 5 : k * 5 + 5] for k in range(B)]
                    probs = v[B * 5 :]
                if (i, j) not in cells:
                    for p in preds:
                        out["loss_noobj"] += model.lambda_noobj * float(p[4]) ** 2
                    continue
                _, t, label = cells[(i, j)]
                ious = []
                for p in preds:
                    q = [min(max(float(v), 0.0), 1.0) for v in p[:4]]  # IoU of the decoded (clamped) box
                    pcx, pcy, pw, ph = (q[0] + j) / S, (q[1] + i) / S, q[2] ** 2, q[3] ** 2
                    px1, py1, px2, py2 = pcx - pw / 2, pcy - ph / 2, pcx + pw / 2, pcy + ph / 2
                    iw = max(0.0, min(px2, t[6]) - max(px1, t[4]))
                    ih = max(0.0, min(py2, t[7]) - max(py1, t[5]))
                    inter = iw * ih
                    ious.append(inter / (pw * ph + (t[6] - t[4]) * (t[7] - t[5]) - inter))
                r = max(range(B), key=lambda k: ious[k])
                for k, p in enumerate(preds):
                    if k == r:
                        out["loss_coord"] += model.lambda_coord * sum((float(p[q]) - t[q]) ** 2 for q in range(4))
                        out["loss_obj"] += (float(p[4]) - ious[k]) ** 2
                    else:
                        out["loss_noobj"] += model.lambda_noobj * float(p[4]) ** 2
                out["loss_cls"] += sum((float(probs[c]) - (1.0 if c == label else 0.0)) ** 2 for c in range(C))
    return {k: v / n for k, v in out.items()}


@pytest.mark.parametrize("activation", ["linear", "sigmoid"])
def test_yolo_loss_matches_the_paper_formula(activation: str) -> None:
    torch.manual_seed(0)
    model = build_detector("yolov1", build_backbone("resnet18"), 3, grid_size=4, boxes_per_cell=2,
                           hidden_channels=8, representation_size=8, activation=activation)
    raw = torch.randn(2, 4, 4, 2 * 5 + 3) * (1.0 if activation == "sigmoid" else 0.3) + (
        0.0 if activation == "sigmoid" else 0.5)
    targets = [
        # two centres in the same cell (0, 0): the larger object is assigned there
        {"boxes": torch.tensor([[2.0, 2.0, 20.0, 14.0], [4.0, 4.0, 10.0, 8.0], [40.0, 30.0, 62.0, 60.0]]),
         "labels": torch.tensor([1, 2, 0])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    ours = model.loss(raw, targets, 64, 64)
    ref = _reference_yolo_loss(model, raw, targets, 64, 64)
    for k in ref:
        assert ours[k].item() == pytest.approx(ref[k], rel=1e-5, abs=1e-6), k


def test_yolo_loss_zero_for_a_perfect_prediction_and_fp32_under_autocast() -> None:
    model = build_detector("yolov1", build_backbone("resnet18"), 2, grid_size=2, boxes_per_cell=1,
                           hidden_channels=8, representation_size=8, rescore=False, activation="sigmoid")
    box = torch.tensor([[0.0, 0.0, 16.0, 16.0]])  # centre (8, 8) in cell (0, 0) of a 32x32 image
    raw = torch.full((1, 2, 2, 5 + 2), -30.0)
    logit = lambda p: torch.logit(torch.tensor(p))  # noqa: E731
    raw[0, 0, 0, :5] = torch.stack([logit(0.5), logit(0.5), logit(0.5**0.5), logit(0.5**0.5), torch.tensor(30.0)])
    raw[0, 0, 0, 5:] = torch.tensor([30.0, -30.0])
    losses = model.loss(raw, [{"boxes": box, "labels": torch.tensor([0])}], 32, 32)
    for k, v in losses.items():
        assert v.item() == pytest.approx(0.0, abs=1e-6), k
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model.loss(raw.bfloat16(), [{"boxes": box, "labels": torch.tensor([0])}], 32, 32)
    assert all(v.dtype == torch.float32 for v in losses.values())
    model.eval()
    det = model.decode(raw, [(32, 32)], 32, 32)[0]
    assert det["labels"][0] == 0 and det["scores"][0] > 0.99
    torch.testing.assert_close(det["boxes"][0], box[0], atol=1e-4, rtol=0)
    # the paper's linear outputs: the targets themselves
    model.activation = "linear"
    raw = torch.zeros(1, 2, 2, 5 + 2)
    raw[0, 0, 0] = torch.tensor([0.5, 0.5, 0.5**0.5, 0.5**0.5, 1.0, 1.0, 0.0])
    losses = model.loss(raw, [{"boxes": box, "labels": torch.tensor([0])}], 32, 32)
    assert all(v.item() == pytest.approx(0.0, abs=1e-6) for v in losses.values())


@pytest.mark.parametrize("kind", ["yolov1", "yolov1_conv"])
def test_yolo_any_input_size(kind: str) -> None:
    model = _build(kind, "resnet18").eval()
    for h, w in ((64, 64), (96, 160), (448, 448)):
        raw = model.raw(torch.zeros(1, 3, h, w))
        assert raw.shape == (1, 7, 7, 2 * 5 + 3)


def test_faster_rcnn_matches_torchvision_with_copied_weights() -> None:
    """Our ``faster_rcnn`` (ResNet-18 + FPN) and torchvision's ``FasterRCNN`` on the same backbone
    have the same parameters; with torchvision's weights copied into ours (entry by entry, as
    benchmarks/faster_rcnn_parity.py does) both return the same detections. torchvision's transform
    is made a no-op (mean 0, std 1, min = max size = the image side)."""
    from torch import nn
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    torch.manual_seed(0)
    size = 96
    tv = FasterRCNN(resnet_fpn_backbone(backbone_name="resnet18", weights=None, norm_layer=nn.BatchNorm2d,
                                        trainable_layers=5), num_classes=4, min_size=size, max_size=size,
                    image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0], rpn_post_nms_top_n_test=100)
    ours = build_detector("faster_rcnn", build_backbone("resnet18"), 3, fpn=True, rpn_post_nms_top_n_test=100)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in tv.parameters())
    for src, dst in ((tv.backbone.body, ours.backbone), (tv.backbone.fpn, ours.fpn), (tv.rpn, ours.rpn),
                     (tv.roi_heads, ours.roi_heads)):
        s, d = src.state_dict(), dst.state_dict()
        assert [v.shape for v in s.values()] == [v.shape for v in d.values()]
        dst.load_state_dict(dict(zip(d, s.values())))
    g = torch.Generator().manual_seed(1)
    images = [torch.randn(3, size, size, generator=g) for _ in range(2)]
    ours.eval(), tv.eval()
    with torch.no_grad():
        a, b = ours(images), tv(images)
    for x, y in zip(a, b):
        assert len(x["boxes"]) > 0
        torch.testing.assert_close(x["boxes"], y["boxes"])
        torch.testing.assert_close(x["scores"], y["scores"])
        assert torch.equal(x["labels"] + 1, y["labels"])  # torchvision: 0 = background
