"""Drawings stay readable at any size: scaled labels on filled boxes inside the image, contrasting
text, overlay legends, a visible colour for a class 0 that is not background."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visiontasks.outputs import DetectionDrawingWriter, SegmentationMaskWriter
from visiontasks.outputs.drawing import (
    CLASS0_COLOUR,
    class_colours,
    contrast_ratio,
    draw_detections,
    drawing_style,
    label_box,
    mask_colour,
    text_colour,
)

WHITE, BLACK = (255, 255, 255), (0, 0, 0)


def _where(img: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return np.all(img == np.array(colour, dtype=np.uint8), axis=-1)


def _label_above_box(size: int) -> tuple[int, int]:
    """Height of the label box and of its text, for a white label above a box on a black square."""
    img = np.zeros((size, size, 3), np.uint8)
    top = size // 2
    out = draw_detections(img, [[0.3 * size, top, 0.7 * size, 0.9 * size]], ["person 0.98"], [WHITE])
    above = out[:top]
    rows = np.nonzero(_where(above, WHITE).any(axis=1))[0]
    label = above[rows.min():rows.max() + 1]
    fill_cols = np.nonzero(_where(label, WHITE).any(axis=0))[0]
    text = label[:, fill_cols.min():fill_cols.max() + 1]
    text_rows = np.nonzero((text.sum(axis=-1) < 3 * 128).any(axis=1))[0]  # dark (anti-aliased) text
    return len(rows), int(text_rows.max() - text_rows.min() + 1)


def test_label_text_height_grows_with_the_image() -> None:
    sizes = [100, 600, 3000]
    heights = [_label_above_box(s) for s in sizes]
    text = [t for _, t in heights]
    assert text == sorted(text) and len(set(text)) == 3, heights
    assert text[0] >= 7  # readable on a thumbnail
    assert 0.015 * 3000 <= text[2] <= 0.06 * 3000  # a visible share of a large photo, not a tenth
    assert all(box > t for box, t in heights)  # the text sits inside its filled box
    assert drawing_style(3000, 4000).line_width > drawing_style(100, 100).line_width


@pytest.mark.parametrize("box", [[250, 0, 300, 40], [-20, -20, 30, 30], [0, 150, 300, 260], [280, 180, 350, 260]])
def test_label_box_lies_inside_the_image(box: list[float]) -> None:
    h, w = 200, 300
    x0, y0, x1, y1 = label_box(box, (120, 20), (h, w))
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert (x1 - x0, y1 - y0) == (120, 20)  # moved, not cut
    # drawn: the whole text is in the picture, the same size as a label with room all around
    grey = np.full((h, w, 3), 90, np.uint8)

    def text_extent(b: list[float]) -> tuple[int, int]:
        ys, xs = np.nonzero(_where(draw_detections(grey, [b], ["a long label"], [WHITE]), BLACK))
        return int(ys.max() - ys.min()), int(xs.max() - xs.min())

    assert text_extent(box) == text_extent([100, 100, 150, 150])


def test_label_text_contrasts_with_its_box() -> None:
    assert text_colour((255, 255, 0)) == BLACK and text_colour((0, 0, 128)) == WHITE
    for colour in class_colours(80) + [mask_colour(k, ["sky"]) for k in range(256)]:
        assert contrast_ratio(text_colour(colour), colour) >= 4.5, colour
    navy = (0, 0, 128)
    out = draw_detections(np.zeros((200, 200, 3), np.uint8), [[20, 100, 180, 190]], ["car 0.70"], [navy])
    label = out[:100]
    light = (label.min(axis=-1) > 200).sum()  # anti-aliased white text
    assert _where(label, navy).sum() > 100 and light > 20


def test_writer_draws_one_box_per_object(tmp_path: Path) -> None:
    writer = DetectionDrawingWriter()
    boxes = torch.tensor([[10.0, 10, 100, 100], [12, 11, 101, 99], [150, 150, 190, 190], [0, 0, 50, 50]])
    scores = torch.tensor([0.9, 0.6, 0.8, 0.3])
    assert writer.shown(boxes, scores).tolist() == [0, 2]  # the near-copy (any class) and 0.3 go
    assert DetectionDrawingWriter(draw_nms_iou=None).shown(boxes, scores).tolist() == [0, 2, 1]
    path = tmp_path / "im.png"
    Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(path)
    pred = [{"path": str(path), "image_id": 7, "boxes": boxes, "scores": scores, "labels": torch.tensor([0, 1, 1, 0])}]
    writer.write_images(pred, ["cat", "dog"], tmp_path)
    drawn = np.asarray(Image.open(tmp_path / "000007_im.png"))
    cat, dog = class_colours(2)
    assert _where(drawn, cat).sum() > 0 and _where(drawn, dog).sum() > 0


def _segment(tmp_path: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray, Image.Image]:
    h, w = 240, 320
    path = tmp_path / "street.png"
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(path)
    mask = np.zeros((h, w), np.int64)  # class 0 everywhere ...
    mask[160:, 200:] = 2  # ... and a "car" bottom right
    out = tmp_path / names[0]
    out.mkdir()
    SegmentationMaskWriter().write_images([{"id": str(path), "mask": torch.from_numpy(mask)}], names, out)
    overlay = np.asarray(Image.open(out / "street_overlay.png"))
    return mask, overlay, Image.open(out / "street_mask.png")


def test_overlay_gives_a_real_class_0_a_colour_and_a_legend(tmp_path: Path) -> None:
    names = ["sky", "road", "car", "person"]
    mask, overlay, png = _segment(tmp_path, names)
    assert overlay.shape == (240, 320, 3)
    sky = overlay[200, 20].astype(int)  # a class-0 pixel far from the legend
    assert sky.sum() > 3 * 128 - 30 and sky[2] > 180  # tinted towards blue, not darkened towards black
    assert all(max(mask_colour(k, names)) > 0 for k in range(1, 1000))  # no class is black
    legend = overlay[:120, :160]  # the top-left corner
    for k in (0, 2):  # present: swatches in full colour
        assert _where(legend, mask_colour(k, names)).sum() >= 16, names[k]
    for k in (1, 3):  # absent
        assert _where(overlay, mask_colour(k, names)).sum() == 0, names[k]
    # the legend has text; the rest of the picture carries no text
    assert _where(legend, BLACK).sum() > 20 and _where(overlay[130:, 170:], BLACK).sum() == 0
    # the index mask keeps its values; its palette has the overlay's colours
    assert np.array_equal(np.asarray(png), mask.astype(np.uint8))
    assert tuple(png.getpalette()[:3]) == CLASS0_COLOUR


def test_background_class_0_stays_undrawn(tmp_path: Path) -> None:
    names = ["background", "road", "car"]
    mask, overlay, png = _segment(tmp_path, names)
    assert overlay[200, 20].tolist() == [128, 128, 128]
    legend = overlay[:120, :160]
    assert _where(legend, mask_colour(2, names)).sum() >= 16
    assert tuple(png.getpalette()[:3]) == BLACK  # VOC's palette, as before


def test_keypoints_dots_and_skeleton_scale_with_the_image() -> None:
    """Dots in the object's colour at the keypoints, the skeleton's line between them, a keypoint
    not in the skeleton still dotted; the dot grows with the image (2 x the box line width)."""
    from visiontasks.outputs.drawing import draw_keypoints

    for side, big in ((100, False), (1000, True)):
        s = side / 100
        image = np.zeros((side, side, 3), np.uint8)
        kp = np.array([[[20 * s, 20 * s, 1.0], [80 * s, 80 * s, -2.0], [20 * s, 80 * s, 0.5]]], np.float32)
        out = draw_keypoints(image, kp, [(0, 1)], [(255, 0, 0)])
        assert out.shape == image.shape
        assert tuple(out[int(20 * s), int(20 * s)]) == (255, 0, 0)
        assert tuple(out[int(80 * s), int(20 * s)]) == (255, 0, 0)  # the third keypoint, outside the skeleton
        assert out[int(50 * s), int(50 * s)].min() > 200  # torchvision's (white) line between 0 and 1
        assert not out[int(20 * s), int(50 * s)].any()  # nothing elsewhere
        assert (tuple(out[int(20 * s), int(20 * s) + 5]) == (255, 0, 0)) is big  # radius 6 px at 1000, 2 at 100
    assert not image.any()  # the input is not drawn on
