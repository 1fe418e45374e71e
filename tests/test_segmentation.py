"""Segmentation contracts: metric vs a hand-computed confusion matrix, FCN shapes on many backbones,
bilinear initialisation, mask readers and their errors, augmentation alignment, synthetic writer."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from visiontasks.backbones import FeatureInfo, build_backbone
from visiontasks.data.segmentation import (
    MaskDecoder,
    MaskError,
    SegmentationDataModule,
    list_folder_pairs,
    save_index_mask,
    segmentation_train_transforms,
    voc_colormap,
    write_synthetic_segmentation,
)
from visiontasks.heads.fcn import FCN, FCN_VARIANTS, BilinearUpsample, FCNHead, bilinear_kernel, convolutionize_
from visiontasks.metrics.segmentation import SegmentationMetrics, format_iou_table, segmentation_scores

torch.set_num_threads(1)


# -- metric ----------------------------------------------------------------------------------------
def test_metric_matches_hand_computed_confusion_matrix():
    # 3 classes + ignore (255); class 2 appears only as a prediction on an ignored pixel.
    target = torch.tensor([[[0, 0, 1, 255], [1, 1, 0, 255]], [[0, 1, 1, 0], [255, 0, 0, 0]]])
    preds = torch.tensor([[[0, 1, 1, 2], [1, 0, 0, 2]], [[0, 1, 1, 0], [2, 0, 1, 0]]])
    # by hand, over the 13 labelled pixels (rows: truth, columns: prediction):
    #   truth 0 (8 px): predicted 0 six times, 1 twice (pixels [0,0,1] and [1,1,2])
    #   truth 1 (5 px): predicted 1 four times, 0 once (pixel [0,1,1])
    #   class 2 is never true; its predictions fall on ignored pixels and are dropped
    expected_cm = torch.tensor([[6, 2, 0], [1, 4, 0], [0, 0, 0]])
    m = SegmentationMetrics(3, ignore_index=255, class_names=["bg", "a", "b"])
    m.update(preds[:1], target[:1])
    m.update(preds[1:], target[1:])
    scores = m.compute()
    assert torch.equal(scores["confmat"], expected_cm)
    # IoU_bg = 6 / (8 + 7 - 6) = 6/9, IoU_a = 4 / (5 + 6 - 4) = 4/7; class b: empty union -> NaN
    iou = scores["iou"]
    assert iou[0] == pytest.approx(6 / 9) and iou[1] == pytest.approx(4 / 7) and math.isnan(iou[2])
    assert scores["mIoU"] == pytest.approx((6 / 9 + 4 / 7) / 2)  # b does not count
    assert scores["pixel_acc"] == pytest.approx(10 / 13)
    assert scores["class_acc"][0] == pytest.approx(6 / 8) and scores["class_acc"][1] == pytest.approx(4 / 5)
    assert scores["mean_class_acc"] == pytest.approx((6 / 8 + 4 / 5) / 2)
    assert m.per_class(scores)["a"] == pytest.approx(4 / 7)
    table = format_iou_table(m.class_names, scores)
    assert "bg" in table and "0.5714" in table and "0.6667" in table


def test_metric_literal_confusion_matrix_and_absent_class():
    # a 2x3 image per update; truth/prediction chosen so the matrix is easy to write down
    t1 = torch.tensor([[[0, 0, 1], [1, 2, 255]]])
    p1 = torch.tensor([[[0, 1, 1], [1, 0, 3]]])
    t2 = torch.tensor([[[2, 2, 2], [0, 255, 255]]])
    p2 = torch.tensor([[[2, 2, 0], [0, 1, 1]]])
    m = SegmentationMetrics(4, ignore_index=255)
    m.update(p1, t1)
    m.update(p2, t2)  # accumulated over "batches" like over an epoch
    expected = torch.tensor(
        [  # pred: 0  1  2  3
            [2, 1, 0, 0],  # truth 0: (0,0)->0, (0,1)->1, second image (1,0)->0
            [0, 2, 0, 0],  # truth 1: both predicted 1
            [2, 0, 2, 0],  # truth 2: first image ->0, second image 2,2,0
            [0, 0, 0, 0],  # truth 3: never (its prediction fell on an ignored pixel)
        ]
    )
    assert torch.equal(m.compute()["confmat"], expected)
    s = segmentation_scores(expected)
    # IoU0 = 2/(3+4-2) = 2/5, IoU1 = 2/(2+3-2) = 2/3, IoU2 = 2/(4+2-2) = 1/2, class 3 -> NaN
    assert s["iou"][:3].tolist() == pytest.approx([2 / 5, 2 / 3, 1 / 2])
    assert math.isnan(s["iou"][3]) and s["mIoU"] == pytest.approx((2 / 5 + 2 / 3 + 1 / 2) / 3)
    assert s["pixel_acc"] == pytest.approx(6 / 9)  # 9 labelled pixels, 6 correct
    # logits give the same matrix as indices
    m2 = SegmentationMetrics(4, ignore_index=255)
    m2.update(F.one_hot(p1, 4).permute(0, 3, 1, 2).float(), t1)
    m2.update(F.one_hot(p2, 4).permute(0, 3, 1, 2).float(), t2)
    assert torch.equal(m2.compute()["confmat"], expected)


def test_metric_empty_is_nan():
    s = segmentation_scores(torch.zeros(3, 3, dtype=torch.long))
    assert math.isnan(s["mIoU"]) and math.isnan(s["pixel_acc"])


# -- FCN head ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vgg16():
    return build_backbone("vgg16")  # slow to build (the canonical model has 138M parameters): once


def test_bilinear_kernel_and_upsample_match_interpolation():
    k = bilinear_kernel(3, 4)
    assert k.shape == (3, 3, 4, 4)
    assert torch.allclose(k[0, 0, 0], torch.tensor([0.25, 0.75, 0.75, 0.25]) * 0.25)
    assert k[0, 1].abs().sum() == 0 and torch.equal(k[1, 1], k[0, 0])  # per channel, diagonal
    torch.manual_seed(0)
    for factor in (2, 8, 16, 32):
        up = BilinearUpsample(3, factor)
        x = torch.randn(2, 3, 5, 4)
        size = (5 * factor, 4 * factor)
        y = up.align(up(x), size)
        ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
        assert y.shape == ref.shape
        assert torch.allclose(y, ref, atol=1e-5)  # borders included (edge-padded input)
    # fixed (depthwise) and learnable (full, diagonal at init) layers compute the same thing
    x = torch.randn(2, 4, 5, 7)
    fixed, learned = BilinearUpsample(4, 8, learnable=False), BilinearUpsample(4, 8)
    assert fixed.groups == 4 and fixed.weight.shape == (4, 1, 16, 16) and learned.groups == 1
    assert torch.allclose(fixed.align(fixed(x), (40, 56)), learned.align(learned(x), (40, 56)), atol=1e-5)
    # a checkpoint holding the full diagonal kernel of a fixed layer (as written before it became
    # depthwise) still loads
    fixed.load_state_dict({"weight": bilinear_kernel(4, 16)})
    assert torch.allclose(fixed.align(fixed(x), (40, 56)), learned.align(learned(x), (40, 56)), atol=1e-5)
    # a constant map stays constant (no fading towards the image border), even from 2x2 cells
    up = BilinearUpsample(2, 32)
    assert torch.allclose(up.align(up(torch.full((1, 2, 2, 2), 3.0)), (64, 64)), torch.tensor(3.0))


def test_fcn_upsampling_initialised_bilinear_and_skips_zero():
    body = build_backbone("resnet18")
    head = FCNHead(body.feature_info, 5, "fcn8s", fc_channels=16, fc_kernel_size=3)
    assert set(head.in_features.items()) == {(32, "layer4"), (16, "layer3"), (8, "layer2")}
    for up in [*head.up2.values(), head.up_final]:
        dense = bilinear_kernel(5, up.kernel_size[0])
        if up.groups > 1:  # the fixed one is depthwise: the diagonal of the dense kernel
            dense = dense[torch.arange(5), torch.arange(5)].unsqueeze(1)
        assert torch.equal(up.weight, dense)
    assert head.up_final.factor == 8 and not head.up_final.weight.requires_grad  # fixed, as in the paper
    assert all(u.weight.requires_grad for u in head.up2.values())
    for conv in head.score_skip.values():
        assert conv.weight.abs().sum() == 0 and conv.bias.abs().sum() == 0
    # at initialisation FCN-8s therefore predicts its stride-32 scores upsampled bilinearly x2, x2, x8
    with torch.no_grad():
        nn.init.normal_(head.score_fr.weight)
        head.eval()
        feats = body.eval()(torch.randn(1, 3, 256, 256))
        ref = head.score_fr(head.fc(feats["layer4"]))
        for size in (16, 32, 256):  # layer4 is 8x8 -> 16x16 (layer3) -> 32x32 (layer2) -> input
            ref = F.interpolate(ref, size=(size, size), mode="bilinear", align_corners=False)
        out = head(feats, (256, 256))
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-4)
    assert not torch.allclose(out, torch.zeros_like(out))


@pytest.mark.parametrize(
    "name", ["vgg16", "resnet18", "resnet50", "densenet121", "mobilenet_v2", "alexnet", "googlenet", "mobilenet_v1"]
)
def test_fcn_output_size_equals_input_size(name, request):
    body = request.getfixturevalue("vgg16") if name == "vgg16" else build_backbone(name)
    body.eval()
    torch.manual_seed(0)
    heads = {v: FCNHead(body.feature_info, 3, v, fc_channels=8, fc_kernel_size=3).eval() for v in FCN_VARIANTS}
    for size in [(67, 75), (97, 64)]:  # odd sides; one backbone pass feeds the three decoders
        with torch.no_grad():
            feats = body(torch.randn(1, 3, *size))
            for variant, head in heads.items():
                assert head(feats, size).shape == (1, 3, *size), (name, variant, size)
    net = FCN(body, heads["fcn8s"])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(torch.randn(2, 3, 65, 71))
    assert out.shape == (2, 3, 65, 71) and out.dtype == torch.bfloat16


def test_lenet_cannot_host_fcn():
    body = build_backbone("lenet5")
    with pytest.raises(ValueError, match=r"no stride-32 output.*c3_s4 \(stride 4\)"):
        FCNHead(body.feature_info, 3, "fcn8s")


def test_paper_vgg16_head_and_convolutionalised_classifier(vgg16):
    body = vgg16
    with torch.device("meta"):  # shapes only: skip allocating and initialising 120M parameters
        head = FCNHead(body.feature_info, 21, "fcn8s")  # the paper's defaults
    fc6, fc7 = head.fc[0], head.fc[3]
    assert fc6.weight.shape == (4096, 512, 7, 7) and fc7.weight.shape == (4096, 4096, 1, 1)
    assert set(head.in_features.values()) == {"stage3", "stage4", "stage5"}
    # a linear layer on a flattened [C, k, k] window equals the convolutionalised layer
    lin = nn.Linear(4 * 3 * 3, 6)
    conv = nn.Conv2d(4, 6, 3)
    assert convolutionize_(conv, lin)
    x = torch.randn(2, 4, 3, 3)
    assert torch.allclose(conv(x).flatten(1), lin(x.flatten(1)), atol=1e-5)
    assert not convolutionize_(nn.Conv2d(4, 6, 1), lin)


def test_head_loads_a_classifier_into_fc6_fc7():
    info = [FeatureInfo("s8", 4, 8), FeatureInfo("s16", 4, 16), FeatureInfo("s32", 8, 32)]
    head = FCNHead(info, 3, "fcn32s", fc_channels=16, fc_kernel_size=7, dropout=0.0).eval()
    fc6, fc7 = nn.Linear(8 * 7 * 7, 16), nn.Linear(16, 16)
    assert head.load_classifier([fc6, fc7, nn.Linear(16, 1000)])
    x = torch.randn(2, 8, 7, 7)  # a 7x7 map: the centre output of fc6 ("same" padding) sees all of it
    with torch.no_grad():
        conv_out = head.fc(x)[..., 3, 3]
        mlp_out = torch.relu(fc7(torch.relu(fc6(x.flatten(1)))))
    assert torch.allclose(conv_out, mlp_out, atol=1e-5)
    assert not head.load_classifier([nn.Linear(8 * 3 * 3, 16), fc7])  # does not fit: unchanged


# -- masks and readers ------------------------------------------------------------------------------
def _write_pair(folder, name, image, mask, mask_mode="P"):
    (folder / "images" / "train").mkdir(parents=True, exist_ok=True)
    (folder / "masks" / "train").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / "images" / "train" / f"{name}.png")
    path = folder / "masks" / "train" / f"{name}.png"
    if mask_mode == "P":
        save_index_mask(path, mask)
    else:
        Image.fromarray(mask).save(path)
    return folder / "images" / "train" / f"{name}.png", path


def _dataset(tmp_path, **kw):
    dm = SegmentationDataModule(str(tmp_path), "folder", val_fraction=0.5, crop_size=None, scale_range=(1, 1), hflip=False, **kw)
    dm.setup("fit")
    return dm


def test_index_masks_and_ignore(tmp_path):
    img = np.zeros((10, 12, 3), np.uint8)
    mask = np.zeros((10, 12), np.uint8)
    mask[2:5, 3:7] = 2
    mask[0] = 255
    for n in range(2):
        _write_pair(tmp_path, f"a{n}", img, mask)
    dm = _dataset(tmp_path, num_classes=3)
    item = dm.datasets["val"][0]
    assert item["image"].shape == (3, 10, 12) and item["mask"].dtype == torch.long
    assert torch.equal(item["mask"], torch.from_numpy(mask).long())


def test_mask_size_mismatch_names_both_files_or_resizes(tmp_path):
    img = np.zeros((20, 30, 3), np.uint8)
    small = np.zeros((10, 15), np.uint8)
    small[:5, :] = 1
    ip, mp = _write_pair(tmp_path, "x", img, small)
    _write_pair(tmp_path, "y", img, np.zeros((20, 30), np.uint8))
    dm = _dataset(tmp_path, num_classes=2)
    ds = dm.datasets["train"] if dm.datasets["train"].samples[0].image == ip else dm.datasets["val"]
    with pytest.raises(MaskError) as err:
        ds[0]
    assert str(ip) in str(err.value) and str(mp) in str(err.value) and "resize_mismatched_masks" in str(err.value)
    dm = _dataset(tmp_path, num_classes=2, resize_mismatched_masks=True)
    ds = dm.datasets["train"] if dm.datasets["train"].samples[0].image == ip else dm.datasets["val"]
    m = ds[0]["mask"]
    assert m.shape == (20, 30) and set(m.unique().tolist()) == {0, 1}  # nearest: no new values
    assert (m[:10] == 1).all() and (m[10:] == 0).all()


def test_out_of_range_values_name_file_and_values(tmp_path):
    mask = np.zeros((8, 8), np.uint8)
    mask[0, 0], mask[1, 1] = 7, 9
    _, mp = _write_pair(tmp_path, "x", np.zeros((8, 8, 3), np.uint8), mask)
    dec = MaskDecoder(3)
    with pytest.raises(MaskError, match=r"values \[7, 9\]") as err:
        dec.read(mp)
    assert str(mp) in str(err.value) and "0..2" in str(err.value)
    assert (MaskDecoder(3, unmapped="ignore").read(mp)[0, 0]) == 255


def test_rgb_mask_where_index_expected_suggests_colour_table(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:4] = (128, 0, 0)
    _, mp = _write_pair(tmp_path, "x", np.zeros((8, 8, 3), np.uint8), rgb, mask_mode="RGB")
    with pytest.raises(MaskError, match="class_colors") as err:
        MaskDecoder(3).read(mp)
    assert str(mp) in str(err.value) and "mask_mode: color" in str(err.value)
    # with the colour table the same file decodes
    dec = MaskDecoder(3, mode="color", class_colors=[[0, 0, 0], [128, 0, 0], [0, 128, 0]])
    m = dec.read(mp)
    assert (m[:4] == 1).all() and (m[4:] == 0).all()
    with pytest.raises(MaskError, match=r"colours \(128, 0, 0\)"):
        MaskDecoder(2, mode="color", class_colors=[[0, 0, 0], [1, 2, 3]]).read(mp)


def test_missing_mask_error_or_skip(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    _write_pair(tmp_path, "a", img, np.zeros((8, 8), np.uint8))
    _write_pair(tmp_path, "b", img, np.zeros((8, 8), np.uint8))
    (tmp_path / "masks" / "train" / "b.png").unlink()
    with pytest.raises(MaskError, match=r"1 of 2 images have no mask.*b\.png.*skip_missing_masks"):
        list_folder_pairs(tmp_path / "images" / "train", tmp_path / "masks" / "train")
    with pytest.warns(UserWarning, match="1 of 2 images have no mask"):
        pairs = list_folder_pairs(tmp_path / "images" / "train", tmp_path / "masks" / "train", skip_missing_masks=True)
    assert [p.image.stem for p in pairs] == ["a"]


def test_voc_layout_palette_masks_with_border(tmp_path):
    root = tmp_path / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True)
    mask = np.zeros((16, 20), np.uint8)
    mask[4:12, 5:15] = 15  # person
    mask[3, 4:16] = 255  # the object border VOC marks as "void"
    for i in ("2007_000001", "2007_000002"):
        Image.fromarray(np.full((16, 20, 3), 90, np.uint8)).save(root / "JPEGImages" / f"{i}.jpg")
        save_index_mask(root / "SegmentationClass" / f"{i}.png", mask)
    (root / "ImageSets/Segmentation/train.txt").write_text("2007_000001\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("2007_000002\n")
    dm = SegmentationDataModule(str(root), "voc", crop_size=None, batch_size=1)
    assert dm.num_classes == 21 and dm.class_names[15] == "person"
    dm.setup("fit")
    got = dm.datasets["val"][0]["mask"]
    assert torch.equal(got, torch.from_numpy(mask).long())
    # the same masks saved as RGB decode identically through the VOC colour table
    rgb = voc_colormap()[mask]
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    dec = MaskDecoder(21, mode="color", class_colors="voc")
    assert np.array_equal(dec.read(tmp_path / "rgb.png"), mask.astype(np.int64))
    with pytest.raises(FileNotFoundError, match="splits found: train, val"):
        SegmentationDataModule(str(root), "voc", train_split="trainaug").setup("fit")


def test_remap_sparse_ids_and_ignore(tmp_path):
    mask = np.array([[0, 7, 7, 200], [13, 13, 0, 7]], np.uint8)
    _, mp = _write_pair(tmp_path, "x", np.zeros((2, 4, 3), np.uint8), mask, mask_mode="L")
    dec = MaskDecoder(3, remap={7: 0, 13: 1, 200: 2, 0: "ignore"})
    assert dec.read(mp).tolist() == [[255, 0, 0, 2], [1, 1, 255, 0]]
    with pytest.raises(MaskError, match=r"values \[200\].*remap"):
        MaskDecoder(3, remap={7: 0, 13: 1, 0: "ignore"}).read(mp)
    with pytest.raises(ValueError, match="outside 0..2"):
        MaskDecoder(3, remap={7: 5})


def test_dataset_yaml_sparse_classes(tmp_path):
    # a COCO128-segmentation style layout: panoptic-like sparse ids, 0 = unlabeled
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "seg" / "masks" / "train").mkdir(parents=True)
    mask = np.array([[0, 1, 1], [44, 184, 0]], np.uint8)
    for n in ("a", "b"):
        Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(tmp_path / "images" / "train" / f"{n}.jpg")
        Image.fromarray(mask).save(tmp_path / "seg" / "masks" / "train" / f"{n}.png")
    cfg = {
        "train": {"images": "../images/train", "masks": "masks/train"},
        "classes": {0: "unlabeled", 1: "person", 44: "bottle", 184: "tree-merged"},
    }
    (tmp_path / "seg" / "config.yaml").write_text(json.dumps(cfg))
    dm = SegmentationDataModule(
        str(tmp_path / "seg"), "dataset_yaml", ignore_ids=[0], val_fraction=0.5, crop_size=None, scale_range=(1, 1), hflip=False
    )
    assert dm.class_names == ["person", "bottle", "tree-merged"]
    dm.setup("fit")
    assert dm.datasets["train"][0]["mask"].tolist() == [[255, 0, 0], [1, 2, 255]]


def test_train_augmentation_keeps_mask_aligned():
    rng = np.random.default_rng(0)
    mask = np.zeros((96, 128), np.int32)
    mask[20:60, 10:80] = 1
    mask[50:90, 70:120] = 2
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255]], np.uint8)
    image = colours[mask]  # the image "draws" its mask: any misalignment shows as disagreement
    tf = segmentation_train_transforms(
        crop_size=144, scale_range=(0.5, 1.6), color_jitter=0.0, mean=(0, 0, 0), std=(1, 1, 1)
    )
    flipped, padded = [], []
    for _ in range(12):
        tf.set_random_seed(int(rng.integers(1 << 30)))
        out = tf(image=image, mask=mask)
        img, m = out["image"], out["mask"]
        assert img.shape[:2] == m.shape == (144, 144)
        assert set(np.unique(m).tolist()) <= {0, 1, 2, 255}  # nearest for masks, ignore for padding
        padded.append((m == 255).any())
        valid = m != 255
        drawn = np.argmin(((img[..., None, :] * 255 - colours[None, None].astype(float)) ** 2).sum(-1), -1)
        assert (drawn[valid] == m[valid]).mean() > 0.97  # only blended boundary pixels may differ
        flipped.append((drawn[valid] == m[:, ::-1][valid]).mean())
    assert min(flipped) < 0.9  # the check would catch a mask left unflipped/unscaled
    assert any(padded)  # small scales were padded, and the padding is ignored in the mask


def test_synthetic_writer_writes_real_files_and_reuses_them(tmp_path):
    root = write_synthetic_segmentation(tmp_path / "s", counts=(3, 2, 1), image_size=40, num_shapes=3, seed=1)
    masks = sorted((root / "masks" / "train").glob("*.png"))
    assert len(masks) == 3 and len(list((root / "images" / "val").glob("*.png"))) == 2
    with Image.open(masks[0]) as im:
        assert im.mode == "P" and im.size == (40, 40)
        values = set(np.unique(np.asarray(im)).tolist())
    assert values <= {0, 1, 2, 3} and len(values) > 1
    stamp = (root / "synthetic.json").stat().st_mtime_ns
    write_synthetic_segmentation(tmp_path / "s", counts=(3, 2, 1), image_size=40, num_shapes=3, seed=1)
    assert (root / "synthetic.json").stat().st_mtime_ns == stamp  # reused, not rewritten
    write_synthetic_segmentation(tmp_path / "s", counts=(4, 2, 1), image_size=40, num_shapes=3, seed=1)
    assert len(list((root / "images" / "train").glob("*.png"))) == 4  # settings changed: rewritten
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not a synthetic dataset"):
        write_synthetic_segmentation(tmp_path / "other", counts=(1, 1, 1))
