"""IoU, GIoU, DIoU and CIoU between boxes, and the box-regression losses built on them.

Boxes are ``xyxy`` (x1, y1, x2, y2) in pixels unless a function says otherwise, with
``x2 >= x1`` and ``y2 >= y1``. Half-precision inputs (float16, bfloat16) are computed and
returned in float32: areas in pixels overflow float16 (max 65504) and ``eps`` underflows it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from detector.ops.boxes import cxcywh_to_xyxy
from detector.registry import LOSSES

IOU_KINDS = ("iou", "giou", "diou", "ciou")
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


def _check_kind(kind: str, allowed: tuple[str, ...] = IOU_KINDS) -> None:
    if kind not in allowed:
        raise ValueError(f"kind must be one of {', '.join(allowed)}, got {kind!r}")


def _upcast(boxes: Tensor) -> Tensor:
    return boxes.float() if boxes.dtype in (torch.float16, torch.bfloat16) else boxes


def _area(boxes: Tensor) -> Tensor:
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Pairwise IoU of ``boxes1 [N, 4]`` and ``boxes2 [M, 4]`` (xyxy) -> ``[N, M]``.

    The union is clamped to ``eps`` so that two zero-area boxes give 0, not NaN.
    """
    iou, _ = _pairwise_iou_union(_upcast(boxes1), _upcast(boxes2), eps)
    return iou


def _pairwise_iou_union(boxes1: Tensor, boxes2: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    top_left = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = _area(boxes1)[:, None] + _area(boxes2)[None, :] - inter
    return inter / union.clamp(min=eps), union


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Pairwise GIoU of ``boxes1 [N, 4]`` and ``boxes2 [M, 4]`` (xyxy) -> ``[N, M]``, in [-1, 1].

    GIoU = IoU - (|C| - |A u B|) / |C| with C the smallest box enclosing both (Rezatofighi et al.).
    """
    boxes1, boxes2 = _upcast(boxes1), _upcast(boxes2)
    iou, union = _pairwise_iou_union(boxes1, boxes2, eps)
    top_left = torch.minimum(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.maximum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - (enclosing - union) / enclosing.clamp(min=eps)


def aligned_iou(boxes1: Tensor, boxes2: Tensor, kind: str = "iou", eps: float = 1e-7) -> Tensor:
    """Element-wise IoU variant of paired boxes ``[..., 4]`` (xyxy, broadcastable) -> ``[...]``.

    ``kind``: "iou"; "giou" = IoU - (|C| - |A u B|) / |C|; "diou" = IoU - rho^2 / c^2 with rho the
    distance between the centres and c the diagonal of the enclosing box C; "ciou" = DIoU - alpha * v
    with v = 4 / pi^2 * (atan(w2 / h2) - atan(w1 / h1))^2 and alpha = v / (1 - IoU + v) (Zheng et al.,
    AAAI 2020). alpha is a trade-off weight, so no gradient flows through it. ``eps`` guards the
    divisions by areas, diagonals and heights that degenerate boxes make zero.
    """
    _check_kind(kind)
    boxes1, boxes2 = torch.broadcast_tensors(_upcast(boxes1), _upcast(boxes2))
    top_left = torch.maximum(boxes1[..., :2], boxes2[..., :2])
    bottom_right = torch.minimum(boxes1[..., 2:], boxes2[..., 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = _area(boxes1) + _area(boxes2) - inter
    iou = inter / union.clamp(min=eps)
    if kind == "iou":
        return iou

    enclosing_wh = torch.maximum(boxes1[..., 2:], boxes2[..., 2:]) - torch.minimum(boxes1[..., :2], boxes2[..., :2])
    if kind == "giou":
        enclosing = enclosing_wh[..., 0] * enclosing_wh[..., 1]
        return iou - (enclosing - union) / enclosing.clamp(min=eps)

    diagonal_sq = enclosing_wh[..., 0] ** 2 + enclosing_wh[..., 1] ** 2
    centre1 = (boxes1[..., :2] + boxes1[..., 2:]) / 2
    centre2 = (boxes2[..., :2] + boxes2[..., 2:]) / 2
    centre_dist_sq = ((centre1 - centre2) ** 2).sum(dim=-1)
    diou = iou - centre_dist_sq / diagonal_sq.clamp(min=eps)
    if kind == "diou":
        return diou

    wh1 = boxes1[..., 2:] - boxes1[..., :2]
    wh2 = boxes2[..., 2:] - boxes2[..., :2]
    # eps in the height: a zero-size box would give atan(0 / 0) = NaN.
    angle1 = torch.atan(wh1[..., 0] / (wh1[..., 1] + eps))
    angle2 = torch.atan(wh2[..., 0] / (wh2[..., 1] + eps))
    v = (4 / math.pi**2) * (angle2 - angle1) ** 2
    with torch.no_grad():
        alpha = v / (1 - iou + v).clamp(min=eps)
    return diou - alpha * v


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
    _check_kind(kind, ("iou", "giou"))
    pred, target = torch.broadcast_tensors(_upcast(pred), _upcast(target))
    pred_xyxy, target_xyxy = cxcywh_to_xyxy(pred), cxcywh_to_xyxy(target)
    top_left = torch.maximum(pred_xyxy[..., :2], target_xyxy[..., :2])
    bottom_right = torch.minimum(pred_xyxy[..., 2:], target_xyxy[..., 2:])
    overlaps = (top_left < bottom_right).all(dim=-1)
    inter = (bottom_right - top_left).prod(dim=-1) * overlaps
    union = pred[..., 2] * pred[..., 3] + target[..., 2] * target[..., 3] - inter
    iou = inter / (union + 1e-16)
    if kind == "iou":
        loss = 1 - iou**2
    else:
        enclosing_wh = torch.maximum(pred_xyxy[..., 2:], target_xyxy[..., 2:]) - torch.minimum(
            pred_xyxy[..., :2], target_xyxy[..., :2]
        )
        enclosing = enclosing_wh.prod(dim=-1)
        giou = iou - (enclosing - union) / enclosing.clamp(min=1e-16)
        loss = 1 - giou.clamp(min=-1.0, max=1.0)
    return reduce_loss(loss, reduction)


@LOSSES.register()
class IoULoss(nn.Module):
    """Box-regression loss ``loss_weight * reduce(1 - IoU variant)`` on paired xyxy boxes.

    ``kind`` in "iou", "giou", "diou", "ciou"; ``reduction`` in "none", "mean", "sum".
    """

    def __init__(self, kind: str = "giou", reduction: str = "mean", loss_weight: float = 1.0, eps: float = 1e-7):
        super().__init__()
        _check_kind(kind)
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
