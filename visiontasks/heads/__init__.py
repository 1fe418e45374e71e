"""Task heads on backbone features (no Lightning here).

The detector modules are imported here, explicitly: each one's ``@register_detector`` decorator
registers its detector, so importing anything from ``visiontasks.heads`` makes them all available
to :func:`~visiontasks.heads.detector.build_detector`. A new detector is one module plus one line
below.
"""

from . import fast_rcnn, faster_rcnn, keypoint_rcnn, mask_rcnn, rcnn, ssd, yolov1  # noqa: F401  (registration)
from .detector import Detector, build_detector, detector_paper, list_detectors, register_detector

__all__ = ["Detector", "build_detector", "detector_paper", "list_detectors", "register_detector"]
