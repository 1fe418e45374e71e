"""Check on real photos that ``load_model(ckpt).predict(...)`` and ``visiontasks predict --ckpt_path X
--source DIR`` give what ``visiontasks predict --config ...`` gives on the same checkpoint.

For each task: train a tiny model for a few steps through the real CLI (from scratch: the point is
equality, not accuracy), predict with the data config, predict from Python on the same image folder,
predict with ``--source``, and compare (classification: labels and probabilities; segmentation:
masks pixel for pixel; detection: boxes, scores, labels) plus the written files byte for byte.

    python benchmarks/predict_api_check.py                       # all three, 16 images each
    python benchmarks/predict_api_check.py --tasks classification --images 8 --steps 2

Data (not in the repository): ants vs bees (ImageFolder) and COCO128 (YOLO boxes, semantic masks)
under ``--data`` (default ../shared/data). Prints one line per task and writes ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from visiontasks import load_model  # noqa: E402
from visiontasks.cli import main  # noqa: E402


def link_images(images: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for p in images:
        link = folder / p.name
        if not link.exists():
            link.symlink_to(p.resolve())
    return folder


def setup_task(task: str, data: Path, work: Path, n: int, steps: int) -> tuple[dict, Path]:
    """The fit config of ``task`` and the folder of ``n`` photos to predict on."""
    trainer = {"max_steps": steps, "limit_val_batches": 1, "accelerator": "cpu", "devices": 1,
               "enable_progress_bar": False, "log_every_n_steps": 1, "num_sanity_val_steps": 0}
    if task == "classification":
        val = sorted((data / "hymenoptera" / "val").rglob("*.jpg"))
        photos = link_images(val[:: max(1, len(val) // n)][:n], work / "photos_classification")
        cfg = {"model": {"class_path": "visiontasks.tasks.ClassificationTask",
                         "init_args": {"backbone": "resnet18", "head": "linear"}},
               "data": {"class_path": "visiontasks.data.ClassificationDataModule", "init_args": {
                   "source": "imagefolder", "root": str(data / "hymenoptera"), "image_size": 160, "batch_size": 8,
                   "skip_bad_images": True, "predict_root": str(photos)}}}
    elif task == "segmentation":
        val = sorted((data / "coco128" / "images" / "val2017").glob("*.jpg"))[:n]
        photos = link_images(val, work / "photos_segmentation")
        cfg = {"model": {"class_path": "visiontasks.tasks.SegmentationTask", "init_args": {
                   "model": "fcn8s", "backbone": "resnet18", "fc_channels": 64, "fc_kernel_size": 3}},
               "data": {"class_path": "visiontasks.data.SegmentationDataModule", "init_args": {
                   "format": "dataset_yaml", "root": str(data / "coco128" / "semantic_segmentation"),
                   "ignore_ids": [0], "skip_missing_masks": True, "crop_size": 256, "batch_size": 4,
                   "eval_batch_size": 4, "predict_root": str(photos)}}}
    else:
        det = work / "coco128_det"
        det.mkdir(parents=True, exist_ok=True)
        src = yaml.safe_load((data / "coco128" / "object_detection" / "config.yaml").read_text())
        src["path"] = "."  # the YOLO layout: images/ and labels/ side by side (linked here)
        (det / "data.yaml").write_text(yaml.safe_dump(src))
        for name, target in (("images", data / "coco128" / "images"),
                             ("labels", data / "coco128" / "object_detection" / "labels")):
            if not (det / name).exists():
                (det / name).symlink_to(target.resolve())
        val = sorted((data / "coco128" / "images" / "val2017").glob("*.jpg"))[:n]
        photos = link_images(val, det / "photos")
        cfg = {"model": {"class_path": "visiontasks.tasks.DetectionTask", "init_args": {
                   "model": "faster_rcnn", "backbone": "resnet18",
                   "model_kwargs": {"anchor_sizes": [32, 64, 128], "representation_size": 128,
                                    "score_thresh": 0.01, "detections_per_img": 50}}},
               "data": {"class_path": "visiontasks.data.DetectionDataModule", "init_args": {
                   "format": "yolo", "root": str(det), "image_size": 320, "resize": "letterbox",
                   "batch_size": 4, "predict": {"images": "photos"}}}}
    cfg["seed_everything"] = 0
    cfg["trainer"] = trainer
    return cfg, photos


def compare(task: str, results: list, cli_dir: Path, category_ids: list[int] | None) -> dict:
    """Largest differences between the API's results and the config run's files."""
    by_stem = {Path(r.source).stem: r for r in results}
    if task == "classification":
        rows = json.loads((cli_dir / "predictions.json").read_text())
        diff = max(abs(float(by_stem[Path(row["id"]).stem].probs[k]) - row[f"p_{n}"])
                   for row in rows for k, n in enumerate(results[0].class_names))
        same = all(by_stem[Path(row["id"]).stem].label == row["index"] for row in rows)
        return {"images": len(rows), "labels_equal": same, "max_prob_diff": diff}
    if task == "segmentation":
        px = tot = 0
        for p in sorted(cli_dir.glob("*_mask.png")):
            theirs = np.asarray(Image.open(p))
            ours = by_stem[p.name[: -len("_mask.png")]].mask.numpy()
            px += int((ours != theirs).sum())
            tot += theirs.size
        return {"images": len(results), "pixels": tot, "pixels_differing": px}
    stems = {int(p.name.split("_", 1)[0]): p.stem.split("_", 1)[1] for p in cli_dir.glob("*.png")}
    per: dict[str, list] = {s: [] for s in stems.values()}
    for r in json.loads((cli_dir / "results.json").read_text()):
        per[stems[r["image_id"]]].append(r)
    box_diff = score_diff = 0.0
    labels_equal, n = True, 0
    for stem, rows in per.items():
        r = by_stem[stem]
        ours_boxes = r.boxes.clone()
        ours_boxes[:, 2:] -= ours_boxes[:, :2]  # xywh as in results.json
        if len(rows) != len(r.boxes):
            labels_equal = False
            continue
        n += len(rows)
        if rows:
            box_diff = max(box_diff, float((ours_boxes - torch.tensor([x["bbox"] for x in rows])).abs().max()))
            score_diff = max(score_diff, float((r.scores - torch.tensor([x["score"] for x in rows])).abs().max()))
        ids = category_ids or list(range(len(r.class_names)))
        labels_equal &= [x["category_id"] for x in rows] == [ids[k] for k in r.labels.tolist()]
    return {"images": len(per), "detections": n, "labels_equal": labels_equal, "max_box_diff_px": box_diff,
            "max_score_diff": score_diff}


def files_identical(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir())
    if names != sorted(p.name for p in b.iterdir()):
        return False
    for name in names:
        if name.endswith(".png"):
            if not np.array_equal(np.asarray(Image.open(a / name)), np.asarray(Image.open(b / name))):
                return False
        elif (a / name).read_bytes() != (b / name).read_bytes():
            return False
    return True


def run(task: str, args: argparse.Namespace) -> dict:
    work = Path(args.work).resolve() / task
    cfg, photos = setup_task(task, Path(args.data).resolve(), work, args.images, args.steps)
    cfg_path = work / f"{task}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    common = ["--config", str(cfg_path), "--trainer.default_root_dir", str(work / "runs")]
    with mock.patch.object(sys, "argv", ["visiontasks"]):
        assert main(["fit", *common]) == 0
        run_dir = sorted((work / "runs" / task).glob("version_*"), key=lambda p: int(p.name.split("_")[1]))[-1]
        ckpt = run_dir / "checkpoints" / "last.ckpt"
        t0 = time.perf_counter()
        assert main(["predict", *common, "--ckpt_path", str(ckpt)]) == 0
        t_cli = time.perf_counter() - t0
    cli_dir = run_dir / "predict" / "predictions"
    batch = cfg["data"]["init_args"].get("eval_batch_size") or cfg["data"]["init_args"]["batch_size"]
    t0 = time.perf_counter()
    model = load_model(ckpt, device="cpu")
    results = model.predict(photos, batch_size=batch)
    t_api = time.perf_counter() - t0
    out = compare(task, results, cli_dir, getattr(model.task, "category_ids", None))
    source_dir = work / "source_predictions"
    assert main(["predict", "--ckpt_path", str(ckpt), "--source", str(photos), "--output", str(source_dir),
                 "--batch_size", str(batch), "--device", "cpu"]) == 0
    out.update(task=task, checkpoint=str(ckpt), source_files_identical=files_identical(source_dir, cli_dir),
               seconds_cli_predict=round(t_cli, 1), seconds_api_load_and_predict=round(t_api, 1))
    return out


def main_() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=["classification", "segmentation", "detection"])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--work", default="runs/predict_api_check")
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--json", default=None, help="write the results here (default: <work>/results.json)")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    results = []
    for task in args.tasks:
        results.append(run(task, args))
        print(json.dumps(results[-1]), flush=True)
    out = Path(args.json or Path(args.work) / "results.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main_()
