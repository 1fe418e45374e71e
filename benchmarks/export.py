"""ONNX Runtime vs PyTorch eager inference time on the CPU, for exported visiontasks models.

Three models, as ``visiontasks export`` writes them (uint8 image in, normalisation inside), random
weights (no download; the time does not depend on the weights, except Faster R-CNN's post-processing,
which sees up to ``rpn_post_nms_top_n_test`` proposals either way):

* ``classification``: ResNet-18, paper head, 1000 classes, 224 x 224, batch ``--batch``;
* ``segmentation``: FCN-8s on ``--fcn_backbone`` (default VGG-16 with the paper's fc6/fc7),
  21 classes, ``--fcn_size`` (default 360 x 480), batch 1;
* ``detection``: Faster R-CNN with FPN on ``--detector_backbone`` (default ResNet-50, torchvision's
  ``fasterrcnn_resnet50_fpn`` layout), 91 classes, ``--detector_size`` (default 800 x 1067, a 480 x 640
  photo under torchvision's shortest-edge 800 / 1333), one image.

Per model: export to ONNX (``torch.onnx.export(dynamo=False)``, opset 17), warm up both, then
``--rounds`` rounds alternating PyTorch eager (``torch.inference_mode``) and ONNX Runtime
(``CPUExecutionProvider``), both on ``--threads`` threads, in one process. Prints the median ms of each
and the ratio eager / onnxruntime (> 1: onnxruntime is faster).

    OMP_NUM_THREADS=4 python benchmarks/export.py --threads 4 --rounds 20       # the real run
    python benchmarks/export.py --rounds 1 --small                               # a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch


def _images(n: int, h: int, w: int) -> torch.Tensor:
    """``uint8 [n, h, w, 3]``, smooth (so the detector's proposals look like objects, not noise)."""
    g = torch.Generator().manual_seed(0)
    small = torch.randint(0, 256, (n, 3, max(h // 16, 1), max(w // 16, 1)), generator=g).float()
    big = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return big.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _tasks(args: argparse.Namespace) -> list[tuple[str, Any, str, tuple[int, int], int]]:
    """``(label, task, family, (H, W), batch)`` per model (random weights)."""
    from visiontasks.preprocessing import Preprocessing
    from visiontasks.tasks import ClassificationTask, DetectionTask, SegmentationTask

    cls = ClassificationTask(backbone="resnet18", num_classes=1000, head="paper")
    cls.preprocessing = Preprocessing("stretch", (224, 224))
    seg_kw = {} if args.fcn_backbone.startswith("vgg") else {"fc_channels": 0}
    seg = SegmentationTask("fcn8s", args.fcn_backbone, num_classes=21, **seg_kw)
    seg.preprocessing = Preprocessing("none", None)
    det = DetectionTask(model="faster_rcnn", backbone=args.detector_backbone, num_classes=90,
                        model_kwargs={"fpn": True})
    det.preprocessing = Preprocessing("shortest_edge", (800, 1333))
    return [
        (f"ResNet-18 classification {args.cls_size[0]}x{args.cls_size[1]} batch {args.batch}", cls,
         "classification", tuple(args.cls_size), args.batch),
        (f"FCN-8s {args.fcn_backbone} {args.fcn_size[0]}x{args.fcn_size[1]}", seg, "segmentation",
         tuple(args.fcn_size), 1),
        (f"Faster R-CNN FPN {args.detector_backbone} {args.detector_size[0]}x{args.detector_size[1]}", det,
         "detection", tuple(args.detector_size), 1),
    ]


def _time(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds per model (each: eager, onnxruntime)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="threads of PyTorch and of onnxruntime")
    parser.add_argument("--batch", type=int, default=1, help="classification batch")
    parser.add_argument("--cls_size", type=int, nargs=2, default=[224, 224])
    parser.add_argument("--fcn_backbone", default="vgg16")
    parser.add_argument("--fcn_size", type=int, nargs=2, default=[360, 480])
    parser.add_argument("--detector_backbone", default="resnet50")
    parser.add_argument("--detector_size", type=int, nargs=2, default=[800, 1067])
    parser.add_argument("--only", nargs="*", default=None, choices=["classification", "segmentation", "detection"])
    parser.add_argument("--small", action="store_true",
                        help="a smoke run: small inputs, resnet18 backbones (numbers mean nothing)")
    args = parser.parse_args()
    if args.small:
        args.cls_size, args.fcn_size, args.detector_size = [64, 64], [64, 96], [128, 160]
        args.fcn_backbone, args.detector_backbone = "resnet18", "resnet18"

    import onnxruntime as ort

    from visiontasks.export import export_task, wrap_task

    torch.set_num_threads(args.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} thread(s), "
          f"{args.rounds} rounds, median ms")
    with tempfile.TemporaryDirectory() as tmp:
        for label, task, family, (h, w), n in _tasks(args):
            if args.only and family not in args.only:
                continue
            task.eval()
            path = Path(tmp) / f"{family}.onnx"
            export_task(task, "onnx", path, dynamic=False, image_size=(h, w), check=False)
            module = wrap_task(task, dynamic=False)
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            images = _images(n, h, w)
            feed = {"image": images.numpy()}

            def eager() -> Any:
                with torch.inference_mode():
                    return module(images)

            def onnx() -> Any:
                return session.run(None, feed)

            for _ in range(args.warmup):
                eager(), onnx()
            times: dict[str, list[float]] = {"eager": [], "onnx": []}
            for _ in range(args.rounds):  # alternated: a busy machine slows both alike
                times["eager"].append(_time(eager))
                times["onnx"].append(_time(onnx))
            e, o = statistics.median(times["eager"]), statistics.median(times["onnx"])
            print(f"{label:<48} eager {e:9.1f}  onnxruntime {o:9.1f}  ratio {e / o:5.2f}", flush=True)


if __name__ == "__main__":
    main()
