"""LightningDataModules, readers per format, albumentations presets and synthetic data."""
from .classification import ClassificationDataModule  # noqa: F401
from .segmentation import SegmentationDataModule  # noqa: F401
from .detection import DetectionDataModule  # noqa: F401
