"""LightningDataModules, readers per format (registered by name), albumentations presets and
synthetic data. A new format is one reader class registered in its family's registry
(``DETECTION_READERS``, ``SEGMENTATION_READERS``, ``CLASSIFICATION_SOURCES``) and imported by its
package; the datamodules look readers up by their ``format`` (``source``) name."""
from .base import VisionDataModule  # noqa: F401
from .classification import ClassificationDataModule  # noqa: F401
from .segmentation import SegmentationDataModule  # noqa: F401
from .detection import DetectionDataModule  # noqa: F401
