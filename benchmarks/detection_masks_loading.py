"""Cost of instance masks in the detection data: ``DetectionDataset[i]`` (read, decode, augment,
normalise) with ``masks`` off and on, alternated in one process, on the synthetic shapes written with
masks (COCO RLE):

    OMP_NUM_THREADS=1 python benchmarks/detection_masks_loading.py --images 200 --repeats 3

Prints milliseconds per training image for each setting (the same files; masks off reads no
``segmentation``).
"""

from __future__ import annotations

import argparse
import tempfile
import time

from visiontasks.data.detection import DetectionDataModule, write_synthetic_detection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--root", default=None, help="where the synthetic set goes (default: a temporary folder)")
    args = parser.parse_args()
    root = args.root or tempfile.mkdtemp(prefix="masks_loading_")
    write_synthetic_detection(root, "coco", splits={"train": args.images, "val": 1}, image_size=args.size,
                              num_classes=3, masks=True)
    sets = {masks: DetectionDataModule(format="coco", root=root, image_size=args.size, masks=masks)
            for masks in (False, True)}
    for dm in sets.values():
        dm.setup("fit")
    times = {False: 0.0, True: 0.0}
    for _ in range(args.repeats):
        for masks, dm in sets.items():
            ds = dm.datasets["train"]
            start = time.perf_counter()
            for i in range(len(ds)):
                ds[i]
            times[masks] += time.perf_counter() - start
    n = args.repeats * args.images
    for masks, total in times.items():
        print(f"masks {'on ' if masks else 'off'}: {total / n * 1e3:.2f} ms/image")


if __name__ == "__main__":
    main()
