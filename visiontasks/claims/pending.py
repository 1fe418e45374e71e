"""Claims of the notes not measured yet (segmentation and detection runs, GAP's overfitting): listed, cited."""

from __future__ import annotations

# (name, statement, sources)
NOT_YET_MEASURED: list[tuple[str, str, tuple[str, ...]]] = [
    ("gap_overfits_less", "Global average pooling overfits less than an FC head (its parameter half is "
     "measured by nin_gap_head).", ("seeds/002_fe5bbf9b65554f16.txt:155",)),
    ("detector_ladder_accuracy", "Each detector generation is at least as accurate as the last (mAP50 / mAP of "
     "trained weights on the same data: docs/detection_generations.md; the speed half is detector_ladder).",
     ("seeds/000_4943f345b6f0fdd0.txt:226-270",)),
]
