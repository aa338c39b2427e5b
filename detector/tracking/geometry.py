"""Box geometry in numpy for the tracker and its metrics: pairwise IoU and GIoU.

Boxes are ``[N, 4]`` pixels, x1, y1, x2, y2 unless a function says otherwise, computed in
float64. The torch counterparts for training are in ``detector.ops.boxes``.
"""

from __future__ import annotations

import numpy as np


def _as_boxes(boxes: np.ndarray) -> np.ndarray:
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def _pairwise_iou(
    lo_a: np.ndarray, hi_a: np.ndarray, area_a: np.ndarray, lo_b: np.ndarray, hi_b: np.ndarray, area_b: np.ndarray
) -> np.ndarray:
    """``[N, M]`` IoU from corners ``lo``, ``hi`` ``[., 2]`` and areas ``[.]``; 0 where the union is not positive."""
    overlap = np.maximum(np.minimum(hi_a[:, None], hi_b[None]) - np.maximum(lo_a[:, None], lo_b[None]), 0.0)
    inter = overlap[..., 0] * overlap[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``[N, M]`` of boxes ``a`` ``[N, 4]`` and ``b`` ``[M, 4]`` (xyxy); 0 for empty boxes.

    A box with x2 < x1 or y2 < y1 counts as empty (area 0)."""
    a, b = _as_boxes(a), _as_boxes(b)
    area_a = np.maximum(a[:, 2] - a[:, 0], 0.0) * np.maximum(a[:, 3] - a[:, 1], 0.0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)
    return _pairwise_iou(a[:, :2], a[:, 2:], area_a, b[:, :2], b[:, 2:], area_b)


def box_iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``[N, M]`` of MOT boxes ``a [N, 4]`` and ``b [M, 4]`` (top-left x, y, w, h pixels).

    Areas are w * h as given (the values of the MOT tools), not differences of converted corners."""
    a, b = _as_boxes(a), _as_boxes(b)
    return _pairwise_iou(
        a[:, :2], a[:, :2] + a[:, 2:], a[:, 2] * a[:, 3], b[:, :2], b[:, :2] + b[:, 2:], b[:, 2] * b[:, 3]
    )


def generalized_box_iou(a: np.ndarray, b: np.ndarray, iou: np.ndarray | None = None) -> np.ndarray:
    """GIoU ``[N, M]`` of boxes ``a [N, 4]`` and ``b [M, 4]`` (xyxy) in [-1, 1]: ``box_iou`` minus
    the part of the smallest enclosing box (the hull) outside the union; 0 penalty for an empty hull.
    ``iou``: their ``box_iou`` when the caller has it already."""
    a, b = _as_boxes(a), _as_boxes(b)
    iou = box_iou(a, b) if iou is None else iou
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    inter_union = area_a[:, None] + area_b[None, :]
    union = inter_union / (1.0 + iou)  # union = A + B - inter and inter = iou * union
    hull = (np.maximum(a[:, None, 2], b[None, :, 2]) - np.minimum(a[:, None, 0], b[None, :, 0])) * (
        np.maximum(a[:, None, 3], b[None, :, 3]) - np.minimum(a[:, None, 1], b[None, :, 1])
    )
    return iou - np.where(hull > 0, (hull - union) / np.where(hull > 0, hull, 1.0), 0.0)
