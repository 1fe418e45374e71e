"""Detection data: COCO JSON, Pascal VOC XML and YOLO txt readers (registered by name in
``DETECTION_READERS``), one target format, synthetic shapes.

Targets everywhere: ``boxes`` float32 [K, 4] xyxy in pixels of the (transformed) image, ``labels``
int64 [K] with 0 = the first real class (no background index), plus ``image_id``, ``orig_size``,
``size``, ``path``, ``image_box`` and, when configured, ``proposals``, ``masks`` and ``keypoints``
(float32 [K, P, 3], x, y, v; see :mod:`.keypoints`).
"""

from visiontasks.data.io import IMAGENET_MEAN, IMAGENET_STD

from .reader import DETECTION_READERS, DetectionReader, register_reader
# importing each format module registers its reader (one place; the datamodule and commands rely on it)
from .coco import CocoReader, read_coco, write_coco
from .common import DatasetFormatError, DetectionRecord, DetectionSplit, clean_boxes, safe_join
from .datamodule import DetectionDataModule
from .dataset import DetectionDataset, detection_collate
from .keypoints import KeypointSpec
from .synthetic import synthetic_class_names, synthetic_keypoint_spec, write_synthetic_detection
from .transforms import (
    AugmentConfig,
    KeypointHorizontalFlip,
    apply_detection_transform,
    boxes_to_original,
    build_detection_transform,
)
from .voc import VOC_CLASSES, VocReader, read_voc, write_voc_xml
from .yolo import YoloReader, label_path_for, load_yolo_yaml, read_yolo, write_yolo_labels

__all__ = [
    "DETECTION_READERS",
    "AugmentConfig",
    "CocoReader",
    "DatasetFormatError",
    "DetectionDataModule",
    "DetectionDataset",
    "DetectionReader",
    "DetectionRecord",
    "DetectionSplit",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KeypointHorizontalFlip",
    "KeypointSpec",
    "VOC_CLASSES",
    "VocReader",
    "YoloReader",
    "apply_detection_transform",
    "boxes_to_original",
    "build_detection_transform",
    "clean_boxes",
    "detection_collate",
    "label_path_for",
    "load_yolo_yaml",
    "read_coco",
    "read_voc",
    "read_yolo",
    "register_reader",
    "safe_join",
    "synthetic_class_names",
    "synthetic_keypoint_spec",
    "write_coco",
    "write_synthetic_detection",
    "write_voc_xml",
    "write_yolo_labels",
]
