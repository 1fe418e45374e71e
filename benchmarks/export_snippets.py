"""The onnxruntime snippets of docs/reuse.md ("Export and run with onnxruntime") on real photos,
against the PyTorch task on the data pipeline (a doc check, not a test: it needs real photos).

    python benchmarks/export_snippets.py cls runs/.../checkpoints/last.ckpt   # a classifier (resize: stretch)
    python benchmarks/export_snippets.py det      # Faster R-CNN FPN ResNet-18, random weights, letterbox 320

Photos from ``--data`` (default ../shared/data: hymenoptera for ``cls``, COCO128 for ``det``); the
exported files go to ``--out``.
"""
import argparse, json, tempfile, time
from pathlib import Path
import cv2, numpy as np, onnxruntime as ort, torch

from visiontasks.export import export_checkpoint, load_task

parser = argparse.ArgumentParser()
parser.add_argument("which", choices=["cls", "det"])
parser.add_argument("ckpt", nargs="?", default=None)
parser.add_argument("--data", default="../shared/data")
parser.add_argument("--out", default=None)
args = parser.parse_args()
which = args.which
photo_dir = Path(args.data)
out = Path(args.out or tempfile.mkdtemp())
out.mkdir(parents=True, exist_ok=True)
if which == "cls":
    ckpt = Path(args.ckpt)
    t = time.time(); done = export_checkpoint(ckpt, "onnx", out / "ants_bees.onnx"); print("export s", round(time.time() - t, 1), "size MB", round(done.path.stat().st_size / 1e6, 1))
    print(json.dumps(done.spec["input"]), done.spec["class_names"])
    # --- the snippet ---
    spec = json.load(open(out / "ants_bees.onnx.json"))
    session = ort.InferenceSession(str(out / "ants_bees.onnx"), providers=["CPUExecutionProvider"])
    task, _ = load_task(ckpt)
    from visiontasks.data.classification.transforms import classification_transforms
    from visiontasks.data.io import read_image
    prep = task.preprocessing
    tf = classification_transforms(prep.image_size, False, "none", prep.mean, prep.std, 3)
    photos = sorted((photo_dir / "hymenoptera/train/bees").glob("*.jpg"))[:5] + sorted((photo_dir / "hymenoptera/train/ants").glob("*.jpg"))[:5]
    worst = 0.0; agree = 0
    for p in photos:
        image = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        h, w = spec["input"]["size"]
        x = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)[None]
        logits, probs = session.run(None, {"image": x})
        with torch.no_grad():
            ref = task(tf(image=read_image(p, 3))["image"][None]).softmax(1)
        worst = max(worst, float(np.abs(probs - ref.numpy()).max())); agree += int(probs.argmax() == int(ref.argmax()))
    print(f"{len(photos)} photos: max |probs onnx (cv2 resize) - task (data pipeline)| = {worst:.2e}; same class {agree}/{len(photos)}")
else:
    from visiontasks.export import export_task
    from visiontasks.preprocessing import Preprocessing
    from visiontasks.tasks import DetectionTask
    torch.manual_seed(0)
    task = DetectionTask(model="faster_rcnn", backbone="resnet18", num_classes=80,
                         model_kwargs={"fpn": True, "score_thresh": 0.0, "detections_per_img": 50}).eval()
    task.preprocessing = Preprocessing("letterbox", (320, 320))
    t = time.time(); done = export_task(task, "onnx", out / "frcnn.onnx"); print("export s", round(time.time() - t, 1), "size MB", round(done.path.stat().st_size / 1e6, 1))
    print(json.dumps(done.spec["input"]), json.dumps(done.spec["preprocessing"]))
    spec = json.load(open(out / "frcnn.onnx.json"))
    session = ort.InferenceSession(str(out / "frcnn.onnx"), providers=["CPUExecutionProvider"])
    from visiontasks.data.detection.transforms import apply_detection_transform, build_detection_transform
    from visiontasks.data.io import read_image
    prep = task.preprocessing
    tf = build_detection_transform(prep.image_size, prep.resize, mean=prep.mean, std=prep.std)
    photos = sorted((photo_dir / "coco128/images").rglob("*.jpg"))[:5]
    worst, n_total, n_same = 0.0, 0, 0
    for p in photos:
        # --- the snippet (letterbox) ---
        image = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        H, W = spec["input"]["size"]; h0, w0 = image.shape[:2]
        scale = min(H / h0, W / w0); h, w = int(h0 * scale), int(w0 * scale)
        top, left = (H - h) // 2, (W - w) // 2
        x = np.empty((H, W, 3), np.uint8); x[:] = [round(m * 255) for m in spec["preprocessing"]["mean"]]
        x[top:top + h, left:left + w] = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        boxes, scores, labels = session.run(None, {"image": x[None]})
        boxes = (boxes - [left, top, left, top]) * [w0 / w, h0 / h, w0 / w, h0 / h]
        boxes = boxes.clip(0, [w0, h0, w0, h0])
        # --- the task ---
        raw = read_image(p, 3)
        img, target = apply_detection_transform(tf, raw, np.zeros((0, 4), np.float32), np.zeros((0,), np.int64))
        with torch.no_grad():
            ref = task.detector([img], [{"image_box": target["image_box"], "orig_size": raw.shape[:2]}])[0]
        n_total += len(ref["boxes"]); k = min(len(ref["boxes"]), len(boxes))
        n_same += int(len(ref["boxes"]) == len(boxes))
        if k:
            from torchvision.ops import box_iou
            iou = box_iou(ref["boxes"], torch.from_numpy(boxes).float())
            j = iou.argmax(1)
            worst = max(worst, float((ref["boxes"] - torch.from_numpy(boxes).float()[j]).abs().max()))
    print(f"{len(photos)} photos, {n_total} detections (task), same count on {n_same}/{len(photos)}; max |box difference| in file pixels {worst:.3f}")
