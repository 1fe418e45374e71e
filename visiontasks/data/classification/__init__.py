"""Classification data: ImageFolder, torchvision MNIST/FashionMNIST/CIFAR-10 from a local root,
scikit-learn's bundled digits (offline), and a synthetic shapes set written as an ImageFolder (one
source class each, registered in ``CLASSIFICATION_SOURCES``).

Every sample is ``{"image": float32 [in_chans, H, W], "label": int64, "id": str}`` (``id``: the file
path, or ``"<source>:<index>"``). Images of any mode (grey, RGB, RGBA, palette) are converted to
``in_chans`` (1 or 3) before the albumentations pipeline.
"""

from .datamodule import ClassificationDataModule
from .dataset import ArraySource, ClassificationDataset, FileSource
from .sources import CLASSIFICATION_SOURCES, ClassificationSource, register_source, scan_image_folder
from .synthetic import write_synthetic_image_folder
from .transforms import Augment, classification_transforms, default_mean_std

__all__ = [
    "CLASSIFICATION_SOURCES",
    "ArraySource",
    "Augment",
    "ClassificationDataModule",
    "ClassificationDataset",
    "ClassificationSource",
    "FileSource",
    "classification_transforms",
    "default_mean_std",
    "register_source",
    "scan_image_folder",
    "write_synthetic_image_folder",
]
