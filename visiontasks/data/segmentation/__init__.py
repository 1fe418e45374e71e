"""Segmentation data: image + mask folders, Pascal VOC, dataset YAMLs (COCO128-style), colour
masks, id remapping, albumentations pipelines and a synthetic shapes set written to disk."""

from .datamodule import SegmentationDataModule
from .masks import MaskDecoder, MaskError, save_index_mask, voc_colormap
from .readers import (
    VOC_CLASSES,
    SegmentationDataset,
    SegmentationSample,
    list_folder_pairs,
    list_voc_pairs,
    pad_collate,
    read_dataset_yaml,
)
from .synthetic import synthetic_class_names, write_synthetic_segmentation
from .transforms import segmentation_eval_transforms, segmentation_train_transforms

__all__ = [
    "VOC_CLASSES",
    "MaskDecoder",
    "MaskError",
    "SegmentationDataModule",
    "SegmentationDataset",
    "SegmentationSample",
    "list_folder_pairs",
    "list_voc_pairs",
    "pad_collate",
    "read_dataset_yaml",
    "save_index_mask",
    "segmentation_eval_transforms",
    "segmentation_train_transforms",
    "synthetic_class_names",
    "voc_colormap",
    "write_synthetic_segmentation",
]
