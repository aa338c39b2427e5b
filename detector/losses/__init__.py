"""Losses: IoU-family box regression losses, classification losses and the composite losses of
the heads (YOLOX, YOLOv5), all registered in LOSSES. The IoUs themselves are in ``detector.ops.boxes``."""

from detector.losses.focal import (
    BCEWithLogitsLoss,
    FocalLoss,
    QualityFocalLoss,
    VarifocalLoss,
    quality_focal_loss,
    sigmoid_focal_loss,
    varifocal_loss,
)
from detector.losses.iou import IoULoss, iou_loss, reduce_loss, yolox_iou_loss
from detector.losses.yolov5_loss import YOLOv5Loss
from detector.losses.yolox_loss import YOLOXLoss

__all__ = [
    "BCEWithLogitsLoss",
    "FocalLoss",
    "IoULoss",
    "QualityFocalLoss",
    "VarifocalLoss",
    "YOLOXLoss",
    "YOLOv5Loss",
    "iou_loss",
    "quality_focal_loss",
    "reduce_loss",
    "sigmoid_focal_loss",
    "varifocal_loss",
    "yolox_iou_loss",
]
