"""Geometry shared by data, heads and outputs: mapping boxes, masks and keypoints between the pixels a model
saw and the pixels of the image file, clipping, IoU helpers, detection post-processing.

Nothing here imports Lightning or ``visiontasks.data``; boxes are float ``[K, 4]`` xyxy in pixels.
"""

from .detection import box_iou, paired_box_iou, postprocess_detections
from .geometry import (
    boxes_to_original, clip_boxes, detections_to_original, instance_masks_to_original, map_to_original,
    mask_to_original, roi_masks_to_image,
)
from .keypoints import COCO_PERSON_SIGMAS, default_sigmas, keypoints_to_original

__all__ = [
    "COCO_PERSON_SIGMAS", "box_iou", "boxes_to_original", "clip_boxes", "default_sigmas", "detections_to_original",
    "instance_masks_to_original", "keypoints_to_original", "map_to_original", "mask_to_original", "paired_box_iou",
    "postprocess_detections", "roi_masks_to_image",
]
