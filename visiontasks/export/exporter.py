"""Export a visiontasks checkpoint to ONNX, TorchScript or ``torch.export``, with its JSON description.

``export_checkpoint(ckpt, "onnx")`` loads the task, wraps its network behind the normalisation
(:mod:`visiontasks.export.wrappers`), exports it, checks the exported model against the eager one on
the example image, and writes ``<file>.json`` beside it (:mod:`visiontasks.export.spec`).

How each format is made:

* ``onnx``: ``torch.onnx.export(dynamo=False)``, opset 17: the tracing exporter, which is the path
  torchvision's detectors export through (their NMS branches stay ``If`` nodes); one exporter for
  every task.
* ``torchscript``: ``torch.jit.trace`` (torchvision's scripted helpers keep their branches).
* ``torch_export``: ``torch.export.export`` + ``torch.export.save`` (a ``.pt2``); Faster R-CNN cannot
  (see its ``export_support``).

Batch: classification and segmentation exports take any ``N``; a detector takes one image per call
(the wrapper's ``one_image``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from visiontasks.errors import InvalidInputError
from visiontasks.preprocessing import Preprocessing

from .spec import export_spec, write_spec

FORMATS = ("onnx", "torchscript", "torch_export")
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript", "torch_export": ".pt2"}
OPSET = 17
EXAMPLE_BATCH = 2  # not 1: torch.export would take a batch of 1 for a constant
DEFAULT_SIZE = (224, 224)  # example size where the preprocessing fixes none


@dataclass
class Exported:
    """What :func:`export_checkpoint` wrote: the model file, its JSON and the description."""

    path: Path
    json_path: Path
    spec: dict[str, Any]


def load_task(path: str | Path) -> tuple[nn.Module, str]:
    """The task of a checkpoint on the CPU in eval mode (as ``load_model`` loads it; a checkpoint
    without preprocessing is allowed, see :func:`task_preprocessing`), and its family."""
    from visiontasks.predictor import family_of, load_task as load_predictor_task

    task = load_predictor_task(path, need_preprocessing=False)
    return task, family_of(type(task))


def wrapper_of(task: nn.Module) -> type[nn.Module]:
    """The export wrapper class the task declares (its ``export_wrapper``); a task without one is
    refused in one line."""
    path = getattr(type(task), "export_wrapper", None)
    if not path:
        raise InvalidInputError(f"{type(task).__name__} declares no export_wrapper: it cannot be exported")
    from visiontasks.tasks.facets import resolve

    return resolve(path)


def wrap_task(task: nn.Module, dynamic: bool = False) -> nn.Module:
    """The module to export: the task's network behind the normalisation of its preprocessing."""
    return wrapper_of(task).for_task(task, task_preprocessing(task), dynamic)


def task_preprocessing(task: nn.Module) -> Preprocessing:
    """The checkpoint's preprocessing; a checkpoint written before it was saved gets ImageNet's
    mean/std at the file's own size (said in the JSON)."""
    prep = getattr(task, "preprocessing", None)
    if prep is not None:
        return prep
    in_chans = int(getattr(task.hparams, "in_chans", 3))
    if in_chans == 3:
        return Preprocessing("none", None)
    return Preprocessing("none", None, (0.5,) * in_chans, (0.5,) * in_chans, in_chans)


def check_supported(task: nn.Module, fmt: str, dynamic: bool) -> None:
    """Refuse, in one line, what the format cannot carry (an unknown format, a wrapper that refuses
    it, e.g. a detector that declares no support for it or a dynamic size it cannot take)."""
    if fmt not in FORMATS:
        raise InvalidInputError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    reason = wrapper_of(task).refusal(task, fmt, dynamic)
    if reason:
        raise InvalidInputError(reason)


def example_size(prep: Preprocessing, image_size: tuple[int, int] | None) -> tuple[int, int]:
    """The (H, W) of the example input: ``image_size`` when given, else the size the preprocessing
    resizes to (``shortest_edge``: a square of its shorter side), else 224 x 224."""
    if image_size is not None:
        return int(image_size[0]), int(image_size[1])
    if prep.resize in ("stretch", "letterbox") and prep.image_size is not None:
        return prep.image_size
    if prep.resize == "shortest_edge" and prep.image_size is not None:
        return prep.image_size[0], prep.image_size[0]
    return DEFAULT_SIZE


def export_checkpoint(
    ckpt_path: str | Path,
    fmt: str = "onnx",
    output: str | Path | None = None,
    dynamic: bool | None = None,
    image_size: tuple[int, int] | None = None,
    opset: int = OPSET,
    check: bool = True,
) -> Exported:
    """Export the task of ``ckpt_path`` to ``fmt`` (``onnx|torchscript|torch_export``); see
    :func:`export_task`. ``output`` defaults to the checkpoint's path with the format's suffix."""
    if fmt not in FORMATS:
        raise InvalidInputError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    task, _ = load_task(ckpt_path)
    path = Path(output) if output is not None else Path(ckpt_path).with_suffix(SUFFIX[fmt])
    return export_task(task, fmt, path, dynamic, image_size, opset, check, checkpoint=str(ckpt_path))


def export_task(
    task: nn.Module,
    fmt: str,
    path: str | Path,
    dynamic: bool | None = None,
    image_size: tuple[int, int] | None = None,
    opset: int = OPSET,
    check: bool = True,
    checkpoint: str | None = None,
) -> Exported:
    """Export a task (through the wrapper its ``export_wrapper`` names) to ``path``.

    ``dynamic``: any input height/width in one export; ``None`` (the default) turns it on where the
    preprocessing does not fix the size (``resize`` ``none`` or ``shortest_edge``) and the model
    can take any size. ``image_size``: the (H, W) exported at (default: the preprocessing's).
    ``check``: run the exported model on the example image (and, when dynamic, on a second size) and
    compare with the eager module.
    """
    check_supported(task, fmt, False)
    if fmt == "onnx" and opset < 11:
        raise InvalidInputError(f"--opset {opset}: torchvision's detection ops need opset 11 or later; give --opset 17")
    prep = task_preprocessing(task)
    if dynamic is None:
        varies = prep.resize in ("none", "shortest_edge") and image_size is None
        dynamic = varies and wrapper_of(task).any_size(task)
    check_supported(task, fmt, dynamic)
    module = wrap_task(task, dynamic)
    h, w = example_size(prep, image_size)
    one_image = wrapper_of(task).one_image
    n = 1 if one_image else EXAMPLE_BATCH
    generator = torch.Generator().manual_seed(0)
    example = torch.randint(0, 256, (n, h, w, prep.in_chans), dtype=torch.uint8, generator=generator)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(module.output_names)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter; the check below is what counts
        EXPORTERS[fmt](module, example, path, names, not one_image, dynamic, opset)
        if check:
            check_export(module, example, path, fmt)
            if dynamic:  # a size the trace did not see: nothing of the example's size may be baked in
                other = torch.randint(0, 256, (n, h + 24, w + 40, prep.in_chans), dtype=torch.uint8,
                                      generator=generator)
                check_export(module, other, path, fmt)
    spec = export_spec(task, wrapper_of(task), fmt, path, prep, (h, w), dynamic, names, opset if fmt == "onnx" else None,
                       checkpoint)
    json_path = write_spec(spec, path)
    return Exported(path, json_path, spec)


# -- the three formats --------------------------------------------------------------------------------
def _export_onnx(module: nn.Module, example: Tensor, path: Path, names: list[str], free_batch: bool,
                 dynamic: bool, opset: int) -> None:
    axes: dict[int, str] = {}
    if free_batch:
        axes[0] = "N"
    if dynamic:
        axes.update({1: "H", 2: "W"})
    out_axes = {name: {0: "N"} for name in names} if free_batch else {}
    if dynamic and free_batch and "mask" in names:
        out_axes = {"logits": {0: "N", 2: "H", 3: "W"}, "mask": {0: "N", 1: "H", 2: "W"}}
    try:
        torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=opset, input_names=["image"],
                          output_names=names, dynamic_axes={"image": axes, **out_axes} if axes else None)
        _free_loop_carried_shapes(path)
    except Exception as err:  # noqa: BLE001 - the one case a person can fix is said in one line
        if "adaptive_avg_pool2d" not in str(err):
            raise
        raise InvalidInputError(
            f"ONNX has no adaptive average pooling: at {example.shape[1]}x{example.shape[2]} the model pools a "
            "feature map to a size that does not divide it (e.g. YOLOv1's S x S grid); give --image_size H W "
            "whose last feature map is a multiple of it (448 for stride 32 and S = 7), or use --format "
            "torchscript / torch_export"
        ) from None


def _free_loop_carried_shapes(path: Path) -> None:
    """Drop the shapes the tracer wrote on the loop-carried inputs of ``Loop`` bodies (rewritten in
    place). Mask pasting (torchvision's ``_onnx_paste_masks_in_image_loop``) grows ``[0, H, W]`` by
    one mask a turn; with the ``0`` written down, onnxruntime warns on every turn of every call that
    the value is ``[1, H, W]``. The values are unchanged."""
    import onnx

    model = onnx.load(str(path))
    bodies = [model.graph]
    found = False
    while bodies:
        graph = bodies.pop()
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    bodies.append(attr.g)
                    if node.op_type == "Loop":  # body inputs: iteration, condition, then the carried values
                        for value in attr.g.input[2:]:
                            value.type.tensor_type.ClearField("shape")
                            found = True
    if found:
        onnx.save(model, str(path))


def _export_torchscript(module: nn.Module, example: Tensor, path: Path, names: list[str], free_batch: bool,
                        dynamic: bool, opset: int) -> None:
    traced = torch.jit.trace(module, (example,), check_trace=False)
    traced.save(str(path))


def _export_torch_export(module: nn.Module, example: Tensor, path: Path, names: list[str], free_batch: bool,
                         dynamic: bool, opset: int) -> None:
    from torch.export import Dim

    dims: dict[int, Any] = {}
    if free_batch:
        dims[0] = Dim("N", min=1, max=1024)
    if dynamic:
        dims.update({1: Dim.AUTO, 2: Dim.AUTO})
    program = torch.export.export(module, (example,), dynamic_shapes=({"image": dims} if dims else None))
    torch.export.save(program, str(path))


EXPORTERS: dict[str, Callable[..., None]] = {
    "onnx": _export_onnx, "torchscript": _export_torchscript, "torch_export": _export_torch_export,
}


# -- loading and checking -----------------------------------------------------------------------------
def load_exported(path: str | Path, fmt: str) -> Callable[[Tensor], tuple[Tensor, ...]]:
    """A callable ``uint8 image -> tuple of output tensors`` for an exported file (onnxruntime on the
    CPU for ONNX)."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda image: tuple(torch.from_numpy(a) for a in session.run(None, {"image": image.numpy()}))
    if fmt == "torchscript":
        model = torch.jit.load(str(path), map_location="cpu")
        return lambda image: tuple(model(image))
    model = torch.export.load(str(path)).module()
    return lambda image: tuple(model(image))


def check_export(module: nn.Module, example: Tensor, path: Path, fmt: str, atol: float = 1e-3) -> None:
    """The exported file's outputs on ``example`` equal the eager module's (same shapes, values within
    ``atol``); a mismatch is a bug of the export path, raised as ``RuntimeError``."""
    expected = module(example)
    got = load_exported(path, fmt)(example)
    for name, a, b in zip(module.output_names, got, expected):
        if tuple(a.shape) != tuple(b.shape):
            raise RuntimeError(f"{path}: output {name} has shape {tuple(a.shape)}, the model gives {tuple(b.shape)}")
        if a.numel() and a.is_floating_point() and float((a.float() - b.float()).abs().max()) > atol:
            raise RuntimeError(f"{path}: output {name} differs from the model's by more than {atol}")
