"""Box-regression losses on the IoU family (``detector.ops.boxes`` computes the IoUs).

Boxes are ``xyxy`` (x1, y1, x2, y2) in pixels unless a function says otherwise. Half-precision
inputs are computed and returned in float32, as in ``detector.ops.boxes``.
"""

from __future__ import annotations

from torch import Tensor, nn

from detector.ops.boxes import aligned_iou, aligned_iou_cxcywh, check_iou_kind
from detector.registry import LOSSES

REDUCTIONS = ("none", "mean", "sum")


def reduce_loss(loss: Tensor, reduction: str) -> Tensor:
    """Apply ``reduction`` ("none", "mean" or "sum") to an element-wise loss."""
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")


def iou_loss(pred: Tensor, target: Tensor, kind: str = "giou", reduction: str = "none", eps: float = 1e-7) -> Tensor:
    """``1 - aligned_iou(pred, target, kind)`` for paired xyxy boxes ``[..., 4]``.

    With "diou" and "ciou" this is the DIoU / CIoU loss (1 - IoU + penalties). Element-wise shape
    ``[...]`` for reduction "none", else a scalar.
    """
    return reduce_loss(1 - aligned_iou(pred, target, kind=kind, eps=eps), reduction)


def yolox_iou_loss(pred: Tensor, target: Tensor, kind: str = "iou", reduction: str = "none") -> Tensor:
    """YOLOX's box loss for paired **cxcywh** boxes ``[..., 4]`` in pixels.

    "iou": ``1 - IoU**2``; "giou": ``1 - clamp(GIoU, -1, 1)``. Areas come from w * h and the union
    is offset by 1e-16, as in YOLOX, so the numbers match its ``IOUloss``. Element-wise shape
    ``[...]`` for reduction "none", else a scalar.
    """
    iou = aligned_iou_cxcywh(pred, target, kind=kind, eps=1e-16)
    loss = 1 - iou**2 if kind == "iou" else 1 - iou.clamp(min=-1.0, max=1.0)
    return reduce_loss(loss, reduction)


@LOSSES.register()
class IoULoss(nn.Module):
    """Box-regression loss ``loss_weight * reduce(1 - IoU variant)`` on paired xyxy boxes.

    ``kind`` in "iou", "giou", "diou", "ciou"; ``reduction`` in "none", "mean", "sum".
    """

    def __init__(self, kind: str = "giou", reduction: str = "mean", loss_weight: float = 1.0, eps: float = 1e-7):
        super().__init__()
        check_iou_kind(kind)
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
        self.kind = kind
        self.reduction = reduction
        self.loss_weight = loss_weight
        self.eps = eps

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """``pred``, ``target`` ``[..., 4]`` xyxy pixels; optional per-box ``weight [...]``."""
        loss = iou_loss(pred, target, kind=self.kind, eps=self.eps)
        if weight is not None:
            loss = loss * weight
        return self.loss_weight * reduce_loss(loss, self.reduction)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, reduction={self.reduction!r}, loss_weight={self.loss_weight}"
