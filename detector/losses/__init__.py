"""Losses: IoU-family box regression losses and classification losses (registered in LOSSES)."""

from detector.losses.focal import (
    BCEWithLogitsLoss,
    FocalLoss,
    QualityFocalLoss,
    VarifocalLoss,
    quality_focal_loss,
    sigmoid_focal_loss,
    varifocal_loss,
)
from detector.losses.iou import (
    IoULoss,
    aligned_iou,
    box_iou,
    generalized_box_iou,
    iou_loss,
    reduce_loss,
    yolox_iou_loss,
)

__all__ = [
    "BCEWithLogitsLoss",
    "FocalLoss",
    "IoULoss",
    "QualityFocalLoss",
    "VarifocalLoss",
    "aligned_iou",
    "box_iou",
    "generalized_box_iou",
    "iou_loss",
    "quality_focal_loss",
    "reduce_loss",
    "sigmoid_focal_loss",
    "varifocal_loss",
    "yolox_iou_loss",
]
