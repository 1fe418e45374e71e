"""The JSON written beside an exported model: what goes in, what comes out, what the caller does first.

One file per exported file, ``<file name>.json`` (``best.onnx`` -> ``best.onnx.json``, so the three
formats of one checkpoint can sit side by side). Plain data; the keys are documented in docs/reuse.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from visiontasks.preprocessing import Preprocessing

INTERPOLATION = "bilinear (OpenCV cv2.INTER_LINEAR, what albumentations uses)"


def caller_steps(prep: Preprocessing, masks: bool = False, keypoints: bool = False) -> list[str]:
    """What the caller does to a decoded ``uint8 [H0, W0, C]`` image before the model, in words that
    match the data pipeline of the checkpoint (albumentations' ``Resize`` / ``LongestMaxSize`` +
    ``PadIfNeeded`` / visiontasks' ``ShortestEdgeResize``), and after it to boxes (and, with
    ``masks``, instance masks ``[D, H, W]``; with ``keypoints``, keypoints ``[D, P, 3]``) to get them
    in the file's pixels."""
    channels = "RGB" if prep.in_chans == 3 else "grey (one channel)"
    steps = [f"decode the image as {channels} uint8 [H0, W0, {prep.in_chans}] (EXIF orientation applied)"]
    if prep.resize == "stretch":
        h, w = prep.image_size
        steps.append(f"resize to H={h}, W={w} ignoring the aspect ratio, {INTERPOLATION}: "
                     f"cv2.resize(image, ({w}, {h}), interpolation=cv2.INTER_LINEAR)")
        if masks:
            steps.append(f"masks back to file pixels: resized from ({h}, {w}) to (H0, W0), bilinear, then >= 0.5")
    elif prep.resize == "letterbox":
        h, w = prep.image_size
        fill = [int(round(m * 255)) for m in prep.mean]
        steps += [
            f"scale = min({h} / H0, {w} / W0); resize to (int(H0 * scale), int(W0 * scale)), {INTERPOLATION}",
            f"pad to H={h}, W={w} with the colour {fill}, the image centred: top = ({h} - h) // 2, "
            f"left = ({w} - w) // 2",
            "boxes back to file pixels: x0 = (x - left) * W0 / w, y0 = (y - top) * H0 / h (w, h: the resized size)",
        ]
        if masks:
            steps.append("masks back to file pixels: masks[:, top:top + h, left:left + w] resized to (H0, W0), "
                         "bilinear, then >= 0.5")
    elif prep.resize == "shortest_edge":
        short, long = prep.image_size
        steps += [
            f"scale = min({short} / min(H0, W0), {long} / max(H0, W0)); resize to (int(H0 * scale), "
            f"int(W0 * scale)), {INTERPOLATION}",
            "boxes back to file pixels: x0 = x * W0 / w, y0 = y * H0 / h (w, h: the resized size)",
        ]
        if masks:
            steps.append("masks back to file pixels: resized to (H0, W0), bilinear, then >= 0.5")
    else:
        steps.append("no resize: the image at its own size")
    if keypoints and prep.resize != "none":
        steps.append("keypoints back to file pixels: each x, y as a box corner above (the third column, the "
                     "keypoint score, unchanged)")
    steps.append("stack into the input batch (layout N, H, W, C); normalisation happens inside the model")
    return steps


def export_spec(
    task: Any, wrapper: Any, fmt: str, path: Path, prep: Preprocessing, size: tuple[int, int], dynamic: bool,
    output_names: list[str], opset: int | None, checkpoint: str | None,
) -> dict[str, Any]:
    """The description of one exported file (plain types, written as JSON); ``wrapper``: the class of
    :mod:`visiontasks.export.wrappers` it was exported through."""
    import torch

    import visiontasks

    shape: list[Any] = [1 if wrapper.one_image else "N",
                        "H" if dynamic else size[0], "W" if dynamic else size[1], prep.in_chans]
    return {
        "format": fmt,
        "file": path.name,
        "task": task.family,
        "model": wrapper.model_name(task),
        "class_names": list(task.class_names),
        "input": {
            "name": "image", "dtype": "uint8", "layout": "NHWC",
            "channels": "RGB" if prep.in_chans == 3 else "grey",
            "shape": shape,
            "size": None if dynamic else list(size),
            "dynamic_size": bool(dynamic),
            "batch": "1 image per call" if wrapper.one_image else "any",
        },
        "preprocessing": {**prep.to_dict(), "interpolation": INTERPOLATION},
        "caller_steps": caller_steps(prep, "masks" in output_names, "keypoints" in output_names),
        "in_graph": "x = float32(image) in NCHW; x = (x - 255 * mean) / (255 * std)",
        "outputs": wrapper.describe_outputs(output_names, task.num_classes),
        "postprocessing": wrapper.postprocessing(task),
        "opset": opset,
        "exporter": {"onnx": "torch.onnx.export(dynamo=False)", "torchscript": "torch.jit.trace",
                     "torch_export": "torch.export.export"}[fmt],
        "visiontasks_version": visiontasks.__version__,
        "torch_version": torch.__version__.split("+")[0],
        "checkpoint": checkpoint,
    }


def spec_path(path: Path) -> Path:
    """``best.onnx -> best.onnx.json``."""
    return path.with_name(path.name + ".json")


def write_spec(spec: dict[str, Any], path: Path) -> Path:
    out = spec_path(path)
    out.write_text(json.dumps(spec, indent=2) + "\n")
    return out
