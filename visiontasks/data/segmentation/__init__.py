"""Segmentation data: image + mask folders, Pascal VOC, dataset YAMLs (COCO128-style) and a synthetic
shapes set written to disk (one reader per layout, registered in ``SEGMENTATION_READERS``), colour
masks, id remapping and albumentations pipelines."""

from .datamodule import SegmentationDataModule
from .dataset import SegmentationDataset, pad_collate
from .masks import MaskDecoder, MaskError, save_index_mask, voc_colormap
from .readers import (
    SEGMENTATION_READERS,
    VOC_CLASSES,
    ReaderOptions,
    SegmentationReader,
    SegmentationSample,
    list_folder_pairs,
    list_voc_pairs,
    read_dataset_yaml,
    register_reader,
)
from .synthetic import synthetic_class_names, write_synthetic_segmentation
from .transforms import segmentation_eval_transforms, segmentation_train_transforms

__all__ = [
    "SEGMENTATION_READERS",
    "VOC_CLASSES",
    "ReaderOptions",
    "SegmentationReader",
    "MaskDecoder",
    "MaskError",
    "SegmentationDataModule",
    "SegmentationDataset",
    "SegmentationSample",
    "list_folder_pairs",
    "list_voc_pairs",
    "pad_collate",
    "read_dataset_yaml",
    "register_reader",
    "save_index_mask",
    "segmentation_eval_transforms",
    "segmentation_train_transforms",
    "synthetic_class_names",
    "voc_colormap",
    "write_synthetic_segmentation",
]
