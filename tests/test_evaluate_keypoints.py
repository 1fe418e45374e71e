"""Keypoint AP by OKS: ``visiontasks evaluate keypoints`` on hand-written COCO person-keypoints
ground truth and results whose answer is known (perfect -> 1.0; every keypoint 3 px off -> OKS
exp(-9 / (2 area (2 sigma)^2)), which passes 9 of COCO's 10 thresholds -> 0.9), the sigmas it
picks, its one-line errors; and the task's metric (``KeypointAP``) on the same numbers."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from visiontasks.cli import main
from visiontasks.metrics.keypoints import KeypointAP
from visiontasks.ops import COCO_PERSON_SIGMAS

# two images, one person each: box 30 x 40 px (no segmentation area: the box's 1200 px stands in)
POINTS = [[[10.0, 10.0, 2], [30.0, 10.0, 2], [20.0, 40.0, 1]], [[50.0, 60.0, 2], [70.0, 62.0, 2], [0.0, 0.0, 0]]]
BOXES = [[5.0, 5.0, 30.0, 40.0], [45.0, 30.0, 30.0, 40.0]]  # x, y, w, h
SIGMA = 0.1
SHIFTED_OKS = math.exp(-9.0 / (2 * 1200 * (2 * SIGMA) ** 2))  # 3 px off, cocoapi's (2 sigma)^2 and area


def _gt(tmp_path: Path, sigmas: list[float] | None = (SIGMA,) * 3, p: int = 3) -> Path:
    category = {"id": 1, "name": "person", "keypoints": [f"k{i}" for i in range(p)], "skeleton": [[1, 2]]}
    if sigmas is not None:
        category["sigmas"] = list(sigmas)
    anns = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": BOXES[i], "iscrowd": 0,
             "keypoints": [v for kp in POINTS[i] for v in kp] + [0, 0, 0] * (p - 3)} for i in range(2)]
    path = tmp_path / "person_keypoints_val.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "height": 100, "width": 100},
                                           {"id": 2, "file_name": "b.jpg", "height": 100, "width": 100}],
                                "annotations": anns, "categories": [category]}))
    return path


def _results(tmp_path: Path, dx: float = 0.0, p: int = 3) -> Path:
    res = [{"image_id": i + 1, "category_id": 1, "score": 0.9 - 0.1 * i,
            "keypoints": [v for x, y, _ in POINTS[i] for v in (x + dx, y, 0.5)] + [0, 0, 0] * (p - 3)}
           for i in range(2)]
    path = tmp_path / f"results_{dx}.json"
    path.write_text(json.dumps(res))
    return path


def _evaluate(gt: Path, pred: Path, out: Path) -> dict:
    assert main(["evaluate", "keypoints", "--gt", str(gt), "--pred", str(pred), "--output", str(out)]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_perfect_and_shifted_keypoints(tmp_path: Path) -> None:
    assert 0.9 < SHIFTED_OKS < 0.95
    perfect = _evaluate(_gt(tmp_path), _results(tmp_path), tmp_path / "a")
    assert perfect["kp_map"] == pytest.approx(1.0) and perfect["kp_map_75"] == pytest.approx(1.0)
    assert perfect["sigmas"] == [SIGMA] * 3 and perfect["keypoints"] == ["k0", "k1", "k2"]
    shifted = _evaluate(_gt(tmp_path), _results(tmp_path, dx=3.0), tmp_path / "b")
    assert shifted["kp_map"] == pytest.approx(0.9) and shifted["kp_map_50"] == pytest.approx(1.0)
    far = _evaluate(_gt(tmp_path), _results(tmp_path, dx=15.0), tmp_path / "c")
    assert far["kp_map"] < shifted["kp_map"]
    assert (tmp_path / "b" / "metrics.txt").read_text().startswith("keypoints: 2 images, 2 detections")


def test_sigmas_default_to_coco_for_17_keypoints_else_one_over_p(tmp_path: Path) -> None:
    got = _evaluate(_gt(tmp_path, None, p=17), _results(tmp_path, p=17), tmp_path / "a")
    assert got["sigmas"] == pytest.approx(list(COCO_PERSON_SIGMAS)) and got["kp_map"] == pytest.approx(1.0)
    got = _evaluate(_gt(tmp_path, None, p=4), _results(tmp_path, p=4), tmp_path / "b")
    assert got["sigmas"] == pytest.approx([0.25] * 4)


def test_bad_files_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = _gt(tmp_path)
    bad_count = tmp_path / "count.json"
    bad_count.write_text(json.dumps([{"image_id": 1, "category_id": 1, "score": 1.0, "keypoints": [1, 2, 3]}]))
    bad_image = tmp_path / "image.json"
    bad_image.write_text(json.dumps([{"image_id": 7, "category_id": 1, "score": 1.0, "keypoints": [0] * 9}]))
    not_json = tmp_path / "broken.json"
    not_json.write_text("[{")
    boxes_only = tmp_path / "instances.json"
    box = {"id": 1, "image_id": 1, "bbox": [0, 0, 1, 1], "category_id": 1}
    boxes_only.write_text(json.dumps({"images": [{"id": 1}], "annotations": [box],
                                      "categories": [{"id": 1, "name": "person"}]}))
    cases = [(gt, bad_count, r"count\.json, entry 0: 3 keypoint values, the ground truth has 3 keypoints"),
             (gt, bad_image, r"image\.json, entry 0: image_id 7 is not in the ground truth"),
             (gt, not_json, r"broken\.json: not a COCO results JSON"),
             (boxes_only, _results(tmp_path), r"instances\.json: no category names its keypoints"),
             (tmp_path / "missing.json", _results(tmp_path), r"missing\.json does not exist")]
    for gt_file, pred, message in cases:
        assert main(["evaluate", "keypoints", "--gt", str(gt_file), "--pred", str(pred)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert re.search(message, err), err


def test_the_task_metric_gives_the_same_numbers() -> None:
    """``KeypointAP`` (what the task logs) on the same objects as tensors (boxes xyxy): 1.0 and 0.9."""
    metric = KeypointAP([SIGMA] * 3)
    targets = [{"boxes": torch.tensor([[x, y, x + w, y + h]]), "labels": torch.zeros(1, dtype=torch.long),
                "keypoints": torch.tensor([POINTS[i]])} for i, (x, y, w, h) in enumerate(BOXES)]
    for dx, expected in ((0.0, 1.0), (3.0, 0.9)):
        preds = [{**t, "scores": torch.tensor([0.9]), "keypoints": t["keypoints"] + torch.tensor([dx, 0.0, 0.0])}
                 for t in targets]
        metric.update(preds, targets)
        assert float(metric.compute()["kp_map"]) == pytest.approx(expected)
        metric.reset()
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long),
             "keypoints": torch.zeros(0, 3, 3)}
    metric.update([empty, empty], targets)
    assert float(metric.compute()["kp_map"]) == 0.0
    with pytest.raises(ValueError, match=r"keypoints must be \[N, 3, 3\]"):
        metric.update([{**empty, "keypoints": torch.zeros(0, 4, 3)}], targets[:1])
