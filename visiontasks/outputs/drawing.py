"""Drawing boxes, labels and legends that stay readable at any image size (no Lightning here).

Sizes follow the image's shorter side (:func:`drawing_style`); text is matplotlib's DejaVu Sans
(a dependency), on a filled box in the class colour with black or white text, whichever contrasts
more (:func:`text_colour`). Images are ``uint8 [H, W, 3]`` numpy arrays; boxes float xyxy in pixels.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


RGB = tuple[int, int, int]

BACKGROUND_NAMES = ("background", "bg", "unlabeled", "unlabelled", "void")
# A non-background class 0 (e.g. "sky" in street scenes) gets this colour instead of VOC's black;
# no VOC colour has a 190 or 255 component, so it is never another class's colour.
CLASS0_COLOUR: RGB = (0, 190, 255)
# What a detection drawing shows by default (the CLI's writer and ``Result.save`` alike): detections
# scoring at least DRAW_SCORE_THRESH that survive a class-agnostic NMS at IoU DRAW_NMS_IOU.
DRAW_SCORE_THRESH = 0.5
DRAW_NMS_IOU = 0.7


def is_background(name: str) -> bool:
    """Whether a class name means "no object" (such a class 0 is not drawn)."""
    return name.lower() in BACKGROUND_NAMES


def class_colours(n: int) -> list[RGB]:
    """``n`` bright, evenly spaced hues (detection boxes; class ``i`` -> ``colours[i]``)."""
    hsv = [colorsys.hsv_to_rgb(i / max(n, 1), 0.85, 1.0) for i in range(n)]
    return [(int(255 * r), int(255 * g), int(255 * b)) for r, g, b in hsv]


@lru_cache(maxsize=1)
def _voc() -> np.ndarray:
    """VOC's 256-colour palette, imported on first use: the classification writers import this
    module, and a classification run must not import the segmentation data package."""
    from visiontasks.data.segmentation.masks import voc_colormap

    return voc_colormap(256)


def mask_colour(k: int, names: Sequence[str]) -> RGB:
    """Overlay / mask-PNG colour of class index ``k``: VOC's colour for ``k >= 1`` (wrapping over
    1..255, so no class is ever black), black for a background class 0, :data:`CLASS0_COLOUR` for a
    class 0 that is a real class."""
    if k == 0:
        return (0, 0, 0) if names and is_background(names[0]) else CLASS0_COLOUR
    return tuple(int(c) for c in _voc()[1 + (k - 1) % 255])  # type: ignore[return-value]


def mask_palette(names: Sequence[str]) -> np.ndarray:
    """``uint8 [256, 3]`` palette of an index-mask PNG, index ``k`` -> :func:`mask_colour`."""
    return np.array([mask_colour(k, names) for k in range(256)], dtype=np.uint8)


def _luminance(c: Sequence[int]) -> float:
    """WCAG relative luminance of an sRGB colour (0 .. 1)."""
    lin = [(v / 255) / 12.92 if v / 255 <= 0.04045 else ((v / 255 + 0.055) / 1.055) ** 2.4 for v in c[:3]]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast_ratio(a: Sequence[int], b: Sequence[int]) -> float:
    """WCAG contrast ratio of two sRGB colours (1 .. 21)."""
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def text_colour(fill: Sequence[int]) -> RGB:
    """Black or white, whichever contrasts more with ``fill`` (at least 4.58:1 for any colour)."""
    black, white = (0, 0, 0), (255, 255, 255)
    return black if contrast_ratio(fill, black) >= contrast_ratio(fill, white) else white


@dataclass(frozen=True)
class DrawingStyle:
    """Pixel sizes for one image: box ``line_width``, ``font_size`` and the label padding ``pad``."""

    line_width: int
    font_size: int
    pad: int


def drawing_style(height: int, width: int) -> DrawingStyle:
    """Sizes scaled to the shorter side ``s``: text 3 % of ``s`` (at least 10 px: 10 px at 100 px,
    14 px at 450 px, 120 px at 4000 px), lines ``s / 300`` (at least 1 px)."""
    s = min(height, width)
    font_size = max(10, round(0.03 * s))
    return DrawingStyle(line_width=max(1, round(s / 300)), font_size=font_size, pad=max(1, font_size // 5))


@lru_cache(maxsize=None)
def _font_path() -> str | None:
    import matplotlib  # a dependency; only its data path is needed (no pyplot)

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    return str(path) if path.is_file() else None


@lru_cache(maxsize=64)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans at ``size`` px (Pillow's built-in font if matplotlib's file is missing)."""
    path = _font_path()
    return ImageFont.truetype(path, size) if path else ImageFont.load_default(size)


def _text_size(f: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str) -> tuple[int, int]:
    """Width and line height (ascent + descent, the same for every text of one font) in pixels."""
    left, _, right, _ = f.getbbox(text, anchor="la")
    ascent, descent = f.getmetrics() if hasattr(f, "getmetrics") else (f.size, 0)
    return int(np.ceil(right - left)), ascent + descent


def label_box(box: Sequence[float], size: tuple[int, int], image_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Where a label of ``size`` (width, height) goes for ``box`` (xyxy): on top of the box's upper
    edge, or just inside it when there is no room above; shifted to stay inside the image
    (``image_hw``); integer ``x0, y0, x1, y1`` with ``x1, y1`` exclusive."""
    h_img, w_img = image_hw
    w, h = size
    x0 = int(round(box[0]))
    y0 = int(round(box[1])) - h
    if y0 < 0:
        y0 = max(int(round(box[1])), 0)
    x0 = max(0, min(x0, w_img - w))
    y0 = max(0, min(y0, h_img - h))
    return x0, y0, min(x0 + w, w_img), min(y0 + h, h_img)


def draw_detections(image: np.ndarray, boxes: Sequence[Sequence[float]], labels: Sequence[str],
                    colours: Sequence[RGB]) -> np.ndarray:
    """``image`` (``uint8 [H, W, 3]``) with each box (xyxy pixels) outlined in its colour and its
    label written on a filled box of that colour; the first box is drawn last (on top), so pass
    them best first. Returns a new array."""
    out = Image.fromarray(np.ascontiguousarray(image[..., :3]))
    style = drawing_style(*image.shape[:2])
    f = font(style.font_size)
    draw = ImageDraw.Draw(out)
    order = list(range(len(labels)))[::-1]
    for i in order:  # all outlines first, so no line crosses a label
        x0, y0, x1, y1 = (float(v) for v in boxes[i])
        draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=tuple(colours[i]), width=style.line_width)
    for i in order:
        w, h = _text_size(f, labels[i])
        lx0, ly0, lx1, ly1 = label_box(boxes[i], (w + 2 * style.pad, h + 2 * style.pad), image.shape[:2])
        draw.rectangle((lx0, ly0, lx1 - 1, ly1 - 1), fill=tuple(colours[i]))
        draw.text((lx0 + style.pad, ly0 + style.pad), labels[i], fill=text_colour(colours[i]), font=f, anchor="la")
    return np.asarray(out)


def draw_instance_masks(image: np.ndarray, masks: np.ndarray, colours: Sequence[RGB], alpha: float = 0.5) -> np.ndarray:
    """``image`` (``uint8 [H, W, 3]``) with each instance mask (``bool [K, H, W]``, file pixels)
    filled in its colour at ``alpha`` (torchvision's ``draw_segmentation_masks``); the first mask is
    painted last (on top), so pass them best first. Returns a new array."""
    import torch
    from torchvision.utils import draw_segmentation_masks

    if len(masks) == 0:
        return np.ascontiguousarray(image[..., :3]).copy()
    img = torch.from_numpy(np.ascontiguousarray(image[..., :3])).permute(2, 0, 1)
    stacked = torch.from_numpy(np.ascontiguousarray(np.asarray(masks, bool)[::-1]))  # best painted last
    out = draw_segmentation_masks(img, stacked, alpha=alpha, colors=[tuple(int(v) for v in c) for c in colours][::-1])
    return out.permute(1, 2, 0).numpy().copy()


def draw_keypoints(image: np.ndarray, keypoints: np.ndarray, skeleton: Sequence[Sequence[int]] | None,
                   colours: Sequence[RGB]) -> np.ndarray:
    """``image`` (``uint8 [H, W, 3]``) with each object's keypoints (``[D, P, >= 2]``, x, y in its
    pixels) drawn as dots in ``colours[i]`` for object ``i`` over the ``skeleton``'s lines (0-based
    index pairs; white, torchvision's ``draw_keypoints``); sizes follow :func:`drawing_style` (lines as
    wide as the box outlines, dots twice that), so they stay readable at any image size. The first
    object is drawn last (on top). Returns a new array."""
    from torchvision.utils import draw_keypoints as tv_draw_keypoints

    out = torch.from_numpy(np.array(image[..., :3])).permute(2, 0, 1).contiguous()  # a writable copy
    style = drawing_style(*image.shape[:2])
    edges = [(int(a), int(b)) for a, b in skeleton] if skeleton else None
    points = torch.as_tensor(np.asarray(keypoints, np.float32))
    radius = max(2, 2 * style.line_width)
    for i in range(len(points))[::-1]:
        xy, colour = points[i:i + 1, :, :2], tuple(colours[i])
        if edges:  # torchvision draws the lines over the dots: again without them, so the dots show
            out = tv_draw_keypoints(out, xy, connectivity=edges, colors=colour, radius=radius, width=style.line_width)
        out = tv_draw_keypoints(out, xy, colors=colour, radius=radius)
    return out.permute(1, 2, 0).numpy().copy()


def draw_legend(image: np.ndarray, entries: Sequence[tuple[str, RGB]]) -> np.ndarray:
    """``image`` (``uint8 [H, W, 3]``) with a legend in its top-left corner: one row per
    ``(name, colour)``, a swatch and the name in black on a translucent white panel, sized like
    the detection labels (:func:`drawing_style`); rows flow into more columns when they do not fit
    the height. Returns a new array of the same size."""
    if not entries:
        return np.ascontiguousarray(image[..., :3]).copy()
    height, width = image.shape[:2]
    style = drawing_style(height, width)
    f = font(style.font_size)
    pad = style.pad
    row_h = _text_size(f, "Ag")[1] + pad
    swatch = row_h - pad
    per_col = max(1, (height - 2 * pad) // row_h)
    columns = [entries[i:i + per_col] for i in range(0, len(entries), per_col)]
    col_w = [swatch + 2 * pad + max(_text_size(f, name)[0] for name, _ in col) for col in columns]
    panel_w = sum(col_w) + pad * (len(columns) + 1)
    panel_h = len(columns[0]) * row_h + pad
    base = Image.fromarray(np.ascontiguousarray(image[..., :3])).convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    panel = (0, 0, min(panel_w, width) - 1, min(panel_h, height) - 1)
    ImageDraw.Draw(layer).rectangle(panel, fill=(255, 255, 255, 200))  # translucent white
    out = Image.alpha_composite(base, layer).convert("RGB")
    draw = ImageDraw.Draw(out)
    x = pad
    for col, cw in zip(columns, col_w):
        for r, (name, colour) in enumerate(col):
            y = pad + r * row_h
            draw.rectangle((x, y, x + swatch - 1, y + swatch - 1), fill=tuple(colour), outline=(0, 0, 0))
            draw.text((x + swatch + pad, y), name, fill=(0, 0, 0), font=f, anchor="la")
        x += cw + pad
    return np.asarray(out)


# -- whole pictures: what the prediction writers save and ``Result.save`` saves ------------------------
def shown_detections(boxes: torch.Tensor, scores: torch.Tensor, score_thresh: float = DRAW_SCORE_THRESH,
                     nms_iou: float | None = DRAW_NMS_IOU) -> torch.Tensor:
    """Indices of the detections to draw (``boxes [N, 4]`` xyxy, ``scores [N]``), best first: those
    scoring at least ``score_thresh`` that survive a class-agnostic NMS at IoU ``nms_iou`` (``None``:
    no NMS), so one object shows one box rather than a stack of boxes of different classes."""
    from torchvision.ops import nms

    keep = torch.nonzero(scores >= score_thresh).flatten()
    if nms_iou is None:
        return keep[scores[keep].argsort(descending=True)]
    return keep[nms(boxes[keep].float(), scores[keep].float(), nms_iou)]


def render_detections(image: np.ndarray, boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                      names: Sequence[str], score_thresh: float = DRAW_SCORE_THRESH,
                      nms_iou: float | None = DRAW_NMS_IOU, rles: Sequence[dict] | None = None,
                      masks: np.ndarray | None = None, keypoints: torch.Tensor | None = None,
                      skeleton: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """``image`` (``uint8 [H, W, 3]``, the file's pixels) with the detections chosen by
    :func:`shown_detections` drawn: box and ``"<class> <score>"`` label in the class colour, the
    instance masks filled, given as ``rles`` (one COCO RLE per detection) or ``masks`` ``[D, H, W]``
    (file pixels), and the keypoints ``[D, P, 3]`` (file pixels) with their ``skeleton``
    (:func:`draw_keypoints`; every keypoint of a drawn detection)."""
    boxes, scores, labels = boxes.detach().cpu(), scores.detach().cpu(), labels.detach().cpu()
    idx = shown_detections(boxes, scores, score_thresh, nms_iou)
    if not len(idx):
        return np.ascontiguousarray(image[..., :3])
    colours = class_colours(len(names))
    text = [f"{names[c]} {s:.2f}" for c, s in zip(labels[idx].tolist(), scores[idx].tolist())]
    drawn = [colours[c] for c in labels[idx].tolist()]
    if rles is not None:
        from pycocotools import mask as mask_utils

        image = draw_instance_masks(image, mask_utils.decode([rles[i] for i in idx.tolist()]).transpose(2, 0, 1), drawn)
    elif masks is not None:
        image = draw_instance_masks(image, np.asarray(masks)[idx.numpy()].astype(np.uint8), drawn)
    if keypoints is not None:
        image = draw_keypoints(image, keypoints.detach().cpu()[idx].numpy(), skeleton, drawn)
    return draw_detections(image, boxes[idx].tolist(), text, drawn)


def render_segmentation(image: np.ndarray, mask: np.ndarray, names: Sequence[str], alpha: float = 0.5) -> np.ndarray:
    """``image`` (``uint8 [H, W, 3]``) with the classes of ``mask`` (``int [H, W]``, same size) drawn
    over it at opacity ``alpha`` in :func:`mask_colour` (a background class 0 is not drawn), and a
    legend of the classes present in its top-left corner."""
    from torchvision.utils import draw_segmentation_masks

    shown = [k for k in np.unique(mask).tolist() if not (k == 0 and is_background(names[0]))]
    img_t = torch.from_numpy(np.ascontiguousarray(image[..., :3].transpose(2, 0, 1)))
    if shown:
        masks = torch.stack([torch.from_numpy(mask == k) for k in shown])
        img_t = draw_segmentation_masks(img_t, masks, alpha=alpha, colors=[mask_colour(k, names) for k in shown])
    legend = [(names[k] if k < len(names) else str(k), mask_colour(k, names)) for k in shown]
    return draw_legend(img_t.permute(1, 2, 0).numpy(), legend)


def save_mask_png(path: str | Path, mask: np.ndarray, names: Sequence[str]) -> None:
    """The class indices ``mask`` as a palette PNG in :func:`mask_palette` (16-bit greyscale ids
    beyond 256 classes)."""
    from visiontasks.data.segmentation.masks import save_index_mask

    if len(names) <= 256:
        save_index_mask(Path(path), mask.astype(np.uint8), mask_palette(names))
    else:  # more classes than a palette PNG holds
        Image.fromarray(mask.astype(np.uint16)).save(path)


def render_classification(image: np.ndarray, name: str, prob: float, k: int, num_classes: int) -> np.ndarray:
    """``image`` with ``"<class> <probability>"`` in the class colour (:func:`class_colours`) as a
    legend in its top-left corner."""
    return draw_legend(image, [(f"{name} {prob:.2f}", class_colours(num_classes)[k])])


CAM_COLOURMAP = "jet"  # as in Zhou et al.'s figures
CAM_MIN_SIDE = 224  # a smaller image is enlarged by a whole factor for its CAM picture


def cam_title(name: str, prob: float, cam_name: str, method: str) -> str:
    """``"bees 0.91, CAM"``, or ``"bees 0.91, CAM of ants"`` for the map of another class."""
    label = "CAM" if method == "cam" else "Grad-CAM"
    return f"{name} {prob:.2f}, {label}" + ("" if cam_name == name else f" of {cam_name}")


def render_cam(image: np.ndarray, cam: np.ndarray, title: str, method: str, colour: RGB = (255, 255, 255),
               alpha: float = 0.5) -> np.ndarray:
    """``image`` (``uint8 [H, W, 3]``, file pixels) with ``cam`` (float ``[H, W]``, the same pixels)
    over it in :data:`CAM_COLOURMAP` at opacity ``alpha`` (from the map's minimum to its maximum),
    ``title`` (:func:`cam_title`) in a legend with a swatch of ``colour`` in its top-left corner, and
    a colour bar of the map's values (``method`` ``cam``: logit per cell; ``grad-cam``) to its right. An image whose shorter side is under
    :data:`CAM_MIN_SIDE` px is first enlarged by the whole factor ``k`` that brings it there
    (nearest, so an 8x8 digit stays visible): ``uint8 [k H, k W + bar, 3]``."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    cam = np.asarray(cam, dtype=np.float32)
    if cam.shape != image.shape[:2]:
        raise ValueError(f"cam {cam.shape} and image {image.shape[:2]} differ in size")
    k = max(1, -(-CAM_MIN_SIDE // min(cam.shape)))
    image, cam = (np.repeat(np.repeat(a, k, 0), k, 1) for a in (image[..., :3], cam))
    lo, hi = float(cam.min()), float(cam.max())
    norm = Normalize(lo, hi if hi > lo else lo + 1e-6)
    cmap = colormaps[CAM_COLOURMAP]
    heat = cmap(norm(cam))[..., :3] * 255.0
    overlay = ((1 - alpha) * image.astype(np.float32) + alpha * heat).round().astype(np.uint8)
    style = drawing_style(*overlay.shape[:2])
    overlay = draw_legend(overlay, [(title, colour)])
    height = overlay.shape[0]
    width = max(80, round(0.22 * height))
    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.12, 0.04, 0.22, 0.92))
    bar = fig.colorbar(ScalarMappable(norm, cmap), cax=ax)
    points = style.font_size * 0.72 * 0.8  # px -> pt at 100 dpi, a little smaller than the legend
    bar.ax.tick_params(labelsize=points)
    bar.set_label("logit per cell" if method == "cam" else "Grad-CAM", size=points)
    fig.canvas.draw()
    strip = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    return np.concatenate([overlay, strip[:height]], axis=1)
