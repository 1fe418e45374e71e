"""The detector generations benchmark as a script (same as ``visiontasks benchmark detectors``):

    python benchmarks/detector_generations.py --config configs/detection/generations_shapes.yaml

Writes a markdown table, a PNG chart and a JSON file (parameters, training time per epoch, inference
time per image with selective-search time separate, mAP50 and mAP) for the detectors the benchmark
file lists (generations_shapes.yaml: R-CNN, Fast R-CNN, Faster R-CNN, YOLOv1, SSD) on one backbone
and one dataset. See docs/detection_generations.md.
"""

import sys

from visiontasks.commands.benchmark import main

if __name__ == "__main__":
    raise SystemExit(main(["detectors", *sys.argv[1:]]))
