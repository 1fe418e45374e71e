"""Reading detection prediction files: a COCO results JSON (what
:class:`~visiontasks.outputs.detection.CocoResultsWriter` writes) and YOLO-style ``<stem>.txt`` files
with a score column, as ``{image_id: [(xyxy, score, label)]}`` in file pixels, and COCO keypoint
results (:func:`read_coco_keypoint_results`); read by ``visiontasks evaluate``. No torch or Lightning
here (evaluate stays light); errors name the file and entry/line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visiontasks.errors import InvalidInputError

if TYPE_CHECKING:
    from visiontasks.data.detection.common import DetectionSplit

# per image id: (box xyxy in file pixels, score in [0, 1], label 0..K-1)
Predictions = dict[int, list[tuple[list[float], float, int]]]


def read_coco_results(path: Path, split: DetectionSplit) -> Predictions:
    """A COCO results JSON (what :class:`~visiontasks.outputs.detection.CocoResultsWriter` writes, or a
    COCO file's ``annotations``) -> ``{image_id: [(xyxy file pixels, score, label)]}``, checked against
    the ground truth ``split`` (its image ids and ``category_ids``)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InvalidInputError(f"predictions {path}: not a COCO results JSON ({err})") from None
    if isinstance(data, dict) and "annotations" in data:
        data = data["annotations"]
    if not isinstance(data, list):
        raise InvalidInputError(f"predictions {path}: expected a list of {{image_id, category_id, bbox, score}}")
    label_of = {cid: i for i, cid in enumerate(split.category_ids)}
    ids = {r.image_id for r in split.records}
    out: dict[int, list] = {}
    for n, d in enumerate(data):
        try:
            image_id, cat, (x, y, w, h), score = int(d["image_id"]), int(d["category_id"]), d["bbox"], float(d["score"])
            x, y, w, h = float(x), float(y), float(w), float(h)
        except (KeyError, TypeError, ValueError):
            raise InvalidInputError(
                f"predictions {path}, entry {n}: needs image_id, category_id, bbox [x, y, w, h] and score"
            ) from None
        if image_id not in ids:
            raise InvalidInputError(
                f"predictions {path}, entry {n}: image_id {image_id} is not in the ground truth; the ids must "
                "be the ground truth's (COCO: the file's image ids; VOC/YOLO: the image's index in the split)"
            )
        if cat not in label_of:
            raise InvalidInputError(
                f"predictions {path}, entry {n}: category_id {cat} is not one of the ground truth's "
                f"{split.category_ids}"
            )
        if not all(map(math.isfinite, (x, y, w, h, score))):
            raise InvalidInputError(f"predictions {path}, entry {n}: bbox or score is not a finite number")
        out.setdefault(image_id, []).append(([x, y, x + w, y + h], score, label_of[cat]))
    return out


def read_yolo_predictions(folder: Path, split: DetectionSplit) -> Predictions:
    """A folder of ``<image stem>.txt`` with ``class cx cy w h score`` (normalised to the image) per
    line, paired with ``split``'s images by stem -> ``{image_id: [(xyxy file pixels, score, label)]}``."""
    from visiontasks.data.detection.common import image_size_of

    by_stem: dict[str, Any] = {}
    for r in split.records:
        if Path(r.path).stem in by_stem:
            raise InvalidInputError(
                f"ground truth images {by_stem[Path(r.path).stem].path} and {r.path} share the stem "
                f"{Path(r.path).stem!r}; YOLO predictions are paired by stem, use COCO results JSON instead"
            )
        by_stem[Path(r.path).stem] = r
    out: dict[int, list] = {}
    k = len(split.class_names)
    for txt in sorted(folder.glob("*.txt")):
        rec = by_stem.get(txt.stem)
        if rec is None:
            continue
        h, w = rec.size or image_size_of(Path(rec.path))
        for line_no, line in enumerate(txt.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                cls, cx, cy, bw, bh, score = int(parts[0]), *map(float, parts[1:6])
                if len(parts) != 6:
                    raise ValueError
            except (ValueError, IndexError):
                raise InvalidInputError(
                    f"predictions {txt}, line {line_no}: expected 'class cx cy w h score' (normalised)"
                ) from None
            if not 0 <= cls < k or not all(map(math.isfinite, (cx, cy, bw, bh, score))):
                raise InvalidInputError(
                    f"predictions {txt}, line {line_no}: class {cls} outside 0..{k - 1} or a value is not finite"
                )
            box = [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h]
            out.setdefault(rec.image_id, []).append((box, score, cls))
    return out


def check_keypoint_count(values: list[float], count: int, where: str, expected: str) -> None:
    """One line naming ``where`` (a file and its entry) unless ``values`` is ``count`` (x, y, third) triples."""
    if len(values) != 3 * count:
        raise InvalidInputError(f"{where}: {len(values)} keypoint values, {expected}")


def read_coco_keypoint_results(path: Path, image_ids: set[int], category_ids: set[int],
                               num_keypoints: int) -> list[dict[str, Any]]:
    """A COCO keypoint results JSON (what :class:`~visiontasks.outputs.detection.CocoResultsWriter`
    writes for keypoint detection: ``{image_id, category_id, keypoints: [x, y, score] * P, score}``
    per detection, file pixels) checked against the ground truth's image and category ids and its
    keypoint count; returns the entries as COCO's evaluation takes them."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InvalidInputError(f"predictions {path}: not a COCO results JSON ({err})") from None
    if not isinstance(data, list):
        raise InvalidInputError(f"predictions {path}: expected a list of {{image_id, category_id, keypoints, score}}")
    out = []
    for n, d in enumerate(data):
        try:
            image_id, cat, score = int(d["image_id"]), int(d["category_id"]), float(d["score"])
            kp = [float(v) for v in d["keypoints"]]
        except (KeyError, TypeError, ValueError):
            raise InvalidInputError(f"predictions {path}, entry {n}: needs image_id, category_id, keypoints "
                                    "[x, y, score, ...] and score") from None
        check_keypoint_count(kp, num_keypoints, f"predictions {path}, entry {n}",
                             f"the ground truth has {num_keypoints} keypoints ({3 * num_keypoints} values: x, y, score each)")
        if image_id not in image_ids:
            raise InvalidInputError(f"predictions {path}, entry {n}: image_id {image_id} is not in the ground truth")
        if cat not in category_ids:
            raise InvalidInputError(f"predictions {path}, entry {n}: category_id {cat} is not one of the ground "
                                    f"truth's {sorted(category_ids)}")
        if not all(map(math.isfinite, [*kp, score])):
            raise InvalidInputError(f"predictions {path}, entry {n}: a keypoint or the score is not a finite number")
        out.append({"image_id": image_id, "category_id": cat, "keypoints": kp, "score": score})
    return out
