"""Box geometry in torch: format conversions, areas, and IoU, GIoU, DIoU and CIoU between boxes.

Formats: ``xyxy`` (x1, y1, x2, y2), ``cxcywh`` (centre x, centre y, width, height), ``xywh``
(COCO: top-left x, top-left y, width, height). All in pixels, last dimension 4, with
``x2 >= x1`` and ``y2 >= y1``.

The IoU functions take ``xyxy`` boxes, except the ``*_cxcywh`` ones, which reproduce YOLOX's
arithmetic on cx, cy, w, h boxes for parity (areas from w * h, not corner differences).
Half-precision inputs (float16, bfloat16) are computed and returned in float32: areas in pixels
overflow float16 (max 65504) and ``eps`` underflows it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: The IoU variants of ``aligned_iou``.
IOU_KINDS = ("iou", "giou", "diou", "ciou")


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``[..., 4]`` cx, cy, w, h -> x1, y1, x2, y2."""
    cxcy, half = boxes[..., :2], boxes[..., 2:4] / 2
    return torch.cat((cxcy - half, cxcy + half), dim=-1)


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """``[..., 4]`` x1, y1, x2, y2 -> cx, cy, w, h."""
    return torch.cat(((boxes[..., :2] + boxes[..., 2:4]) / 2, boxes[..., 2:4] - boxes[..., :2]), dim=-1)


def xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """``[..., 4]`` x1, y1, x2, y2 -> COCO x, y, w, h."""
    return torch.cat((boxes[..., :2], boxes[..., 2:4] - boxes[..., :2]), dim=-1)


def xywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``[..., 4]`` COCO x, y, w, h -> x1, y1, x2, y2."""
    return torch.cat((boxes[..., :2], boxes[..., :2] + boxes[..., 2:4]), dim=-1)


def check_iou_kind(kind: str, allowed: tuple[str, ...] = IOU_KINDS) -> None:
    """ValueError naming ``kind`` and the choices unless ``kind`` is in ``allowed``."""
    if kind not in allowed:
        raise ValueError(f"kind must be one of {', '.join(allowed)}, got {kind!r}")


def _upcast(boxes: Tensor) -> Tensor:
    return boxes.float() if boxes.dtype in (torch.float16, torch.bfloat16) else boxes


def box_area(boxes: Tensor) -> Tensor:
    """``[..., 4]`` xyxy -> ``[...]`` area ``(x2 - x1) * (y2 - y1)``."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _intersection_union(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """Intersection and union areas of broadcastable xyxy boxes ``[..., 4]`` -> two ``[...]``."""
    top_left = torch.maximum(boxes1[..., :2], boxes2[..., :2])
    bottom_right = torch.minimum(boxes1[..., 2:], boxes2[..., 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter, box_area(boxes1) + box_area(boxes2) - inter


def _enclosing_wh(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """``[..., 2]`` width and height of the smallest box enclosing both xyxy boxes."""
    return torch.maximum(boxes1[..., 2:], boxes2[..., 2:]) - torch.minimum(boxes1[..., :2], boxes2[..., :2])


def _giou(iou: Tensor, union: Tensor, enclosing_wh: Tensor, eps: float) -> Tensor:
    enclosing = enclosing_wh[..., 0] * enclosing_wh[..., 1]
    return iou - (enclosing - union) / enclosing.clamp(min=eps)


def box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Pairwise IoU of ``boxes1 [N, 4]`` and ``boxes2 [M, 4]`` (xyxy) -> ``[N, M]``.

    The union is clamped to ``eps`` so that two zero-area boxes give 0, not NaN.
    """
    inter, union = _intersection_union(_upcast(boxes1)[:, None], _upcast(boxes2)[None])
    return inter / union.clamp(min=eps)


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Pairwise GIoU of ``boxes1 [N, 4]`` and ``boxes2 [M, 4]`` (xyxy) -> ``[N, M]``, in [-1, 1].

    GIoU = IoU - (|C| - |A u B|) / |C| with C the smallest box enclosing both (Rezatofighi et al.).
    """
    boxes1, boxes2 = _upcast(boxes1)[:, None], _upcast(boxes2)[None]
    inter, union = _intersection_union(boxes1, boxes2)
    iou = inter / union.clamp(min=eps)
    return _giou(iou, union, _enclosing_wh(boxes1, boxes2).clamp(min=0), eps)


def aligned_iou(boxes1: Tensor, boxes2: Tensor, kind: str = "iou", eps: float = 1e-7) -> Tensor:
    """Element-wise IoU variant of paired boxes ``[..., 4]`` (xyxy, broadcastable) -> ``[...]``.

    ``kind``: "iou"; "giou" = IoU - (|C| - |A u B|) / |C|; "diou" = IoU - rho^2 / c^2 with rho the
    distance between the centres and c the diagonal of the enclosing box C; "ciou" = DIoU - alpha * v
    with v = 4 / pi^2 * (atan(w2 / h2) - atan(w1 / h1))^2 and alpha = v / (1 - IoU + v) (Zheng et al.,
    AAAI 2020). alpha is a trade-off weight, so no gradient flows through it. ``eps`` guards the
    divisions by areas, diagonals and heights that degenerate boxes make zero.
    """
    check_iou_kind(kind)
    boxes1, boxes2 = torch.broadcast_tensors(_upcast(boxes1), _upcast(boxes2))
    inter, union = _intersection_union(boxes1, boxes2)
    iou = inter / union.clamp(min=eps)
    if kind == "iou":
        return iou

    enclosing_wh = _enclosing_wh(boxes1, boxes2)
    if kind == "giou":
        return _giou(iou, union, enclosing_wh, eps)

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


def _intersection_union_cxcywh(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """YOLOX's intersection and union of broadcastable cxcywh boxes ``[..., 4]``, and the boxes' corners.

    Areas are w * h (not corner differences) and only a strict overlap counts, as in YOLOX's
    ``bboxes_iou`` and ``IOUloss``, so the values agree with YOLOX's bit for bit.
    """
    xyxy1, xyxy2 = cxcywh_to_xyxy(boxes1), cxcywh_to_xyxy(boxes2)
    top_left = torch.maximum(xyxy1[..., :2], xyxy2[..., :2])
    bottom_right = torch.minimum(xyxy1[..., 2:], xyxy2[..., 2:])
    overlaps = (top_left < bottom_right).all(dim=-1)
    inter = (bottom_right - top_left).prod(dim=-1) * overlaps
    union = boxes1[..., 2] * boxes1[..., 3] + boxes2[..., 2] * boxes2[..., 3] - inter
    return inter, union, xyxy1, xyxy2


def box_iou_cxcywh(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU of ``boxes1 [N, 4]`` with ``boxes2 [M, 4]``, both cxcywh pixels -> ``[N, M]``.

    Areas are w * h (not corner differences) so the values, and hence SimOTA's cost ranking,
    agree bit for bit with YOLOX's own ``bboxes_iou``.
    """
    inter, union, _, _ = _intersection_union_cxcywh(_upcast(boxes1)[:, None], _upcast(boxes2)[None])
    # Only two zero-area boxes make the union 0; the clamp turns their 0 / 0 into 0.
    return inter / union.clamp(min=torch.finfo(union.dtype).tiny)


def aligned_iou_cxcywh(boxes1: Tensor, boxes2: Tensor, kind: str = "iou", eps: float | None = None) -> Tensor:
    """Element-wise IoU ("iou") or GIoU ("giou") of paired cxcywh boxes ``[..., 4]`` (broadcastable) -> ``[...]``.

    Areas come from w * h, as in YOLOX. ``eps`` None: the union is clamped to the dtype's
    smallest normal number, so a pair gets the same IoU as from ``box_iou_cxcywh`` (YOLOX reads
    its positives' IoUs off that pairwise matrix). ``eps`` a number: YOLOX's ``IOUloss``, the
    union offset by ``eps`` and the enclosing area clamped to it (YOLOX uses 1e-16).
    """
    check_iou_kind(kind, ("iou", "giou"))
    boxes1, boxes2 = torch.broadcast_tensors(_upcast(boxes1), _upcast(boxes2))
    inter, union, xyxy1, xyxy2 = _intersection_union_cxcywh(boxes1, boxes2)
    if eps is None:
        iou = inter / union.clamp(min=torch.finfo(union.dtype).tiny)
        eps = torch.finfo(union.dtype).tiny
    else:
        iou = inter / (union + eps)
    if kind == "iou":
        return iou
    enclosing = _enclosing_wh(xyxy1, xyxy2).prod(dim=-1)
    return iou - (enclosing - union) / enclosing.clamp(min=eps)
