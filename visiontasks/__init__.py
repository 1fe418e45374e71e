"""visiontasks: Lightning tasks for classification, FCN segmentation and six detector generations
(R-CNN, Fast R-CNN, Faster R-CNN, Mask R-CNN, YOLOv1, SSD)."""

import os

# albumentations asks PyPI for a newer version at every import unless this is set: no run of ours
# may reach the network by itself. Users can still override it explicitly.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"

from visiontasks._lazy import lazy_attributes  # noqa: E402  (after the environment is set)

# ``from visiontasks import load_model`` imports torch and Lightning only when used (PEP 562)
_LAZY = {"load_model": "predictor", "Predictor": "predictor"}
__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
