"""visiontasks: Lightning tasks for classification, FCN segmentation and four detector generations."""

import os

# albumentations asks PyPI for a newer version at every import unless this is set: no run of ours
# may reach the network by itself. Users can still override it explicitly.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
