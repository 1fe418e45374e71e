"""Claims of the notes not measured yet (segmentation and detection runs, GAP's overfitting): listed, cited."""

from __future__ import annotations

# (name, statement, sources)
NOT_YET_MEASURED: list[tuple[str, str, tuple[str, ...]]] = [
    ("gap_overfits_less", "Global average pooling overfits less than an FC head (its parameter half is "
     "measured by nin_gap_head).", ("seeds/002_fe5bbf9b65554f16.txt:155",)),
    ("fcn", "A fully convolutional network keeps the position information and takes any input size.",
     ("seeds/000_4943f345b6f0fdd0.txt:209-222", "seeds/003_cd3e64e9312e8605.txt:35-40")),
    ("detector_ladder", "R-CNN -> Fast R-CNN -> Faster R-CNN -> YOLO: each faster than the last.",
     ("seeds/000_4943f345b6f0fdd0.txt:226-270", "seeds/002_fe5bbf9b65554f16.txt:219-240")),
]
