"""SSD: torchvision parity (parameters, copied weights), default boxes, sources, extra layers, matching.

The train/eval contract (odd sizes, images without boxes, bf16) is tests/test_detector_contract.py's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from visiontasks.backbones import build_backbone
from visiontasks.errors import InvalidInputError
from visiontasks.heads.detector import build_detector
from visiontasks.heads.ssd import SSD, TORCHVISION_SSD300


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_ssd300_vgg16_has_torchvisions_parameter_count() -> None:
    from torchvision.models.detection import ssd300_vgg16

    with torch.device("meta"):  # shapes only: no memory, no initialisation
        tv = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=91)
        ours = build_detector("ssd", build_backbone("vgg16"), 90, **TORCHVISION_SSD300)
    assert _params(tv) == _params(ours) == 35_641_826


def test_ssd300_layout_is_the_papers() -> None:
    """conv4_3 (38), fc7 (19), conv8_2 .. conv11_2 (10, 5, 3, 1) at 300 px: 8732 default boxes."""
    with torch.device("meta"):  # shapes only
        model = build_detector("ssd", build_backbone("vgg16"), 20, image_size=300).eval()
        x = torch.zeros(1, 3, 300, 300)
    assert model.vgg_fc and model.l2norm is not None
    with torch.no_grad():
        maps = model.features(x)
    assert [m.shape[-1] for m in maps] == [38, 19, 10, 5, 3, 1]
    assert [m.shape[1] for m in maps] == [512, 1024, 512, 256, 256, 256]
    gen = model.anchor_generator
    assert gen.num_anchors_per_location() == [4, 6, 6, 6, 4, 4]  # {1, 2, 1/2} / {1, 2, 3, 1/2, 1/3} + s'_k
    assert gen.scales[:6] == pytest.approx([0.2, 0.34, 0.48, 0.62, 0.76, 0.9])  # s_min .. s_max
    head, anchors = model.outputs(x, [(300, 300)])
    assert anchors[0].shape == (8732, 4) and head["cls_logits"].shape == (1, 8732, 21)


@pytest.mark.slow
def test_torchvision_ssd_state_dict_gives_identical_detections(tmp_path: Path) -> None:
    """torchvision's ssd300_vgg16 (random weights) -> state_dict file -> our ssd on vgg16 with
    torchvision's settings: the same detections. Its transform normalises (Caffe mean, std 1/255) and
    resizes to 300 (a no-op on 300 px images); ours gets the images normalised the same way, as our
    data pipeline would. Another class count re-initialises the classification head with a warning;
    another backbone is refused."""
    from torchvision.models.detection import ssd300_vgg16

    torch.manual_seed(0)
    tv = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=4).eval()
    path = tmp_path / "ssd.pth"
    torch.save(tv.state_dict(), path)
    ours = build_detector("ssd", build_backbone("vgg16"), 3, weights=str(path), **TORCHVISION_SSD300).eval()
    image = torch.rand(3, 300, 300, generator=torch.Generator().manual_seed(1))
    mean = torch.tensor([0.48235, 0.45882, 0.40784]).view(3, 1, 1)
    with torch.no_grad():
        expected, found = tv([image])[0], ours([(image - mean) * 255.0])[0]
    assert len(expected["boxes"]) > 0
    torch.testing.assert_close(found["boxes"], expected["boxes"], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(found["scores"], expected["scores"], rtol=1e-4, atol=1e-5)
    assert torch.equal(found["labels"] + 1, expected["labels"])  # torchvision's class 0 is the background

    with pytest.warns(UserWarning, match="has 3 classes, the model 5: the classification head"):
        other = build_detector("ssd", build_backbone("vgg16"), 5, weights=str(path), **TORCHVISION_SSD300)
    torch.testing.assert_close(other.fc[1].weight, tv.backbone.extra[0][7][1].weight)
    assert other.head.classification_head.module_list[0].out_channels == 4 * 6
    with pytest.warns(UserWarning, match="trained with torchvision's default boxes"):
        build_detector("ssd", build_backbone("vgg16"), 3, weights=str(path))
    with pytest.raises(InvalidInputError, match="set backbone: vgg16"):
        build_detector("ssd", build_backbone("vgg11"), 3, weights=str(path), **TORCHVISION_SSD300)
    with pytest.raises(InvalidInputError, match="SSD300_VGG16_Weights"):
        build_detector("ssd", build_backbone("vgg16"), 3, weights="COCO_V2")  # an unknown name: no download


def test_sources_by_stride_and_extras_down_to_one() -> None:
    meta = torch.device("meta")  # shapes only
    with meta:
        model = build_detector("ssd", build_backbone("resnet18"), 3, image_size=128, extra_channels=[64, 32])
    assert model.source_names == ["layer2", "layer3", "layer4"] and not model.vgg_fc and model.l2norm is None
    maps = model.features(torch.zeros(1, 3, 128, 128, device=meta))
    assert [m.shape[-1] for m in maps] == [16, 8, 4, 2, 1]
    assert [m.shape[1] for m in maps] == [128, 256, 512, 64, 32]
    assert model.anchor_generator.num_anchors_per_location() == [4, 6, 6, 4, 4]
    with meta:
        picked = build_detector("ssd", build_backbone("mobilenet_v2"), 3, sources=["stage4", "stage5"], image_size=64)
    assert picked.source_names == ["stage4", "stage5"]
    assert [m.shape[-1] for m in picked.features(torch.zeros(1, 3, 64, 64, device=meta))] == [4, 2, 1]
    with pytest.raises(ValueError, match="aspect_ratios has 2 lists, the model has 3 maps"):
        build_detector("ssd", build_backbone("resnet18"), 3, image_size=32, aspect_ratios=[[2], [2, 3]])


def test_every_object_gets_its_best_default_box_and_three_negatives_per_positive() -> None:
    """A box far smaller than every default box (IoU < 0.5 with all) is still matched to its best one
    (a box loss > 0); the classification loss counts the positive and 3 negatives per positive."""
    torch.manual_seed(0)
    model = SSD(build_backbone("resnet18"), 2, image_size=64, extra_channels=[32]).train()
    images = [torch.randn(3, 64, 64)]
    target = {"boxes": torch.tensor([[10.0, 10.0, 13.0, 13.0]]), "labels": torch.tensor([1])}
    head, anchors = model.outputs(images[0][None], [(64, 64)])
    from torchvision.ops import box_iou

    iou = box_iou(target["boxes"], anchors[0])
    assert float(iou.max()) < 0.5
    matched = model.proposal_matcher(iou)
    assert int((matched >= 0).sum()) == 1
    losses = model(images, [target])
    assert float(losses["bbox_regression"].detach()) > 0
    cls = torch.nn.functional.cross_entropy(head["cls_logits"][0], torch.zeros(len(anchors[0]), dtype=torch.long),
                                            reduction="none")
    positive = int(matched.argmax())
    cls_pos = torch.nn.functional.cross_entropy(head["cls_logits"][0, positive:positive + 1], torch.tensor([2]))
    negatives = cls.clone()
    negatives[positive] = -1
    expected = cls_pos + negatives.topk(3).values.sum()
    torch.testing.assert_close(losses["classification"], expected, rtol=1e-4, atol=1e-4)
