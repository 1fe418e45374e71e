"""Claims of the notes that need training or detection runs: listed, cited, not yet measured."""

from __future__ import annotations

# (name, statement, sources)
NOT_YET_MEASURED: list[tuple[str, str, tuple[str, ...]]] = [
    ("plain_vs_residual", "Deeper plain networks train worse (degradation, not overfitting); skip "
     "connections fix it.", ("seeds/000_4943f345b6f0fdd0.txt:159-177", "seeds/001_ad955026876a85d8.txt:428-443",
                            "seeds/002_fe5bbf9b65554f16.txt:171-180")),
    ("batch_norm", "Batch normalization smooths the optimization and helps gradient descent.",
     ("seeds/002_fe5bbf9b65554f16.txt:198-204", "seeds/000_4943f345b6f0fdd0.txt:126")),
    ("relu_vs_tanh", "ReLU avoids the vanishing gradients of sigmoid/tanh.",
     ("seeds/000_4943f345b6f0fdd0.txt:119-122", "seeds/001_ad955026876a85d8.txt:290-300")),
    ("dropout", "Dropout prevents overfitting.", ("seeds/001_ad955026876a85d8.txt:277-279",
                                                  "seeds/000_4943f345b6f0fdd0.txt:127")),
    ("lrn", "Local response normalization (AlexNet) is no longer needed; BatchNorm replaced it.",
     ("seeds/000_4943f345b6f0fdd0.txt:124-126",)),
    ("momentum", "Momentum (m about 0.9) helps SGD.", ("seeds/002_fe5bbf9b65554f16.txt:95-101",
                                                      "seeds/001_ad955026876a85d8.txt:369")),
    ("gap_overfits_less", "Global average pooling overfits less than an FC head (its parameter half is "
     "measured by nin_gap_head).", ("seeds/002_fe5bbf9b65554f16.txt:155",)),
    ("fcn", "A fully convolutional network keeps the position information and takes any input size.",
     ("seeds/000_4943f345b6f0fdd0.txt:209-222", "seeds/003_cd3e64e9312e8605.txt:35-40")),
    ("detector_ladder", "R-CNN -> Fast R-CNN -> Faster R-CNN -> YOLO: each faster than the last.",
     ("seeds/000_4943f345b6f0fdd0.txt:226-270", "seeds/002_fe5bbf9b65554f16.txt:219-240")),
]
