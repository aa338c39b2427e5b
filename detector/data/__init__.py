"""Datasets (COCO json, YOLO txt, synthetic shapes), transforms and batching.

Importing the package registers ``CocoDataset`` and ``YoloTxtDataset`` in ``DATASETS`` and
``TrainTransform`` and ``EvalTransform`` in ``TRANSFORMS``.
"""

from detector.data.coco import CocoDataset, read_image
from detector.data.loader import build_dataloader, collate_detection
from detector.data.synthetic import CLASS_NAMES as SYNTHETIC_CLASS_NAMES
from detector.data.synthetic import generate_synthetic_coco
from detector.data.transforms import EvalTransform, TrainTransform, build_augmentations, letterbox
from detector.data.yolo_txt import YoloTxtDataset

__all__ = [
    "SYNTHETIC_CLASS_NAMES",
    "CocoDataset",
    "EvalTransform",
    "TrainTransform",
    "YoloTxtDataset",
    "build_augmentations",
    "build_dataloader",
    "collate_detection",
    "generate_synthetic_coco",
    "letterbox",
    "read_image",
]
