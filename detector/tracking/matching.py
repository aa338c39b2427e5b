"""Association costs and similarities between tracks and detections, and Hungarian assignment
with a threshold.

Boxes are ``[N, 4]`` x1, y1, x2, y2 pixels (numpy). Costs and similarities are ``[tracks,
detections]``; a lower cost, a higher similarity is better; a pair whose cost is above the
threshold is never matched. The costs of ``COSTS`` take the boxes and, optionally, their IoU
``[tracks, detections]`` when the caller has it already (the tracker computes it once a frame).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from detector.tracking.geometry import box_iou, generalized_box_iou


def iou_cost(tracks: np.ndarray, detections: np.ndarray, iou: np.ndarray | None = None) -> np.ndarray:
    """``1 - IoU``: 0 for identical boxes, 1 for disjoint ones."""
    return 1.0 - (box_iou(tracks, detections) if iou is None else iou)


def giou_cost(tracks: np.ndarray, detections: np.ndarray, iou: np.ndarray | None = None) -> np.ndarray:
    """``(1 - GIoU) / 2`` in [0, 1]: like ``iou_cost`` but still ordered for disjoint boxes
    (farther apart costs more)."""
    return (1.0 - generalized_box_iou(tracks, detections, iou)) / 2.0


def centre_distance_cost(tracks: np.ndarray, detections: np.ndarray, iou: np.ndarray | None = None) -> np.ndarray:
    """Distance between box centres divided by the track box's diagonal (0 = same centre;
    ``iou`` is not needed)."""
    a = np.asarray(tracks, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(detections, dtype=np.float64).reshape(-1, 4)
    ca = (a[:, :2] + a[:, 2:]) / 2
    cb = (b[:, :2] + b[:, 2:]) / 2
    diagonal = np.hypot(a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]).clip(1e-9)
    return np.linalg.norm(ca[:, None, :] - cb[None, :, :], axis=2) / diagonal[:, None]


def height_iou(tracks: np.ndarray, detections: np.ndarray) -> np.ndarray:
    """``[T, N]`` the boxes' vertical overlap over their vertical extent together, in [0, 1]
    (Hybrid-SORT's height IoU): low for people at different depths, whose feet and heads are at
    different heights, and for a box on half a person."""
    a = np.asarray(tracks, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(detections, dtype=np.float64).reshape(-1, 4)
    overlap = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    extent = np.maximum(a[:, None, 3], b[None, :, 3]) - np.minimum(a[:, None, 1], b[None, :, 1])
    return np.divide(overlap.clip(0), extent, out=np.zeros_like(overlap), where=extent > 0)


def height_modulated_iou_cost(tracks: np.ndarray, detections: np.ndarray, iou: np.ndarray | None = None) -> np.ndarray:
    """``1 - HMIoU``, Hybrid-SORT's height-modulated IoU (Yang et al., 2024): IoU times
    ``height_iou``, so that people at different depths overlap less than their IoU says."""
    return 1.0 - height_iou(tracks, detections) * (box_iou(tracks, detections) if iou is None else iou)


COSTS = {"iou": iou_cost, "giou": giou_cost, "centre": centre_distance_cost, "hmiou": height_modulated_iou_cost}


def shape_similarity(tracks: np.ndarray, detections: np.ndarray) -> np.ndarray:
    """``[T, N]`` BoostTrack's shape similarity ``exp(-(|dw| / max w + |dh| / max h))`` in (0, 1]:
    1 for boxes of equal width and height wherever they are (the corrected form, each side over
    its own larger value)."""
    a = np.asarray(tracks, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(detections, dtype=np.float64).reshape(-1, 4)
    sizes_a, sizes_b = a[:, None, 2:] - a[:, None, :2], b[None, :, 2:] - b[None, :, :2]  # [T, 1, 2], [1, N, 2]
    relative = np.abs(sizes_a - sizes_b) / np.maximum(np.maximum(sizes_a, sizes_b), 1e-9)
    return np.exp(-relative.sum(axis=2))


def mahalanobis_similarity(distance: np.ndarray, limit: float) -> np.ndarray:
    """``[T, N]`` BoostTrack's Mahalanobis similarity from squared distances ``distance`` ``[T, N]``:
    for each track a softmax over the detections of ``limit - distance``, 0 where the distance is
    beyond ``limit`` (those detections still count, as ``exp(0)``, in the softmax's sum)."""
    closeness = limit - np.minimum(np.asarray(distance, dtype=np.float64), limit)
    if closeness.size == 0:
        return closeness
    weights = np.exp(closeness - closeness.max(axis=1, keepdims=True))  # the softmax without overflow
    similarity = weights / weights.sum(axis=1, keepdims=True)
    return np.where(distance > limit, 0.0, similarity)


def linear_assignment(cost: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one matching (Hungarian, ``scipy.optimize.linear_sum_assignment``) in
    which leaving a row and a column unmatched costs ``threshold``: a pair is matched only when
    its cost is at most ``threshold`` and no cheaper overall matching needs its row or column.

    ``cost``: ``[N, M]``, rectangular or empty; ``inf`` or NaN forbids a pair. Returns ``matches``
    ``[K, 2]`` (row, column) int64 sorted by row, and the unmatched rows and columns (int64).
    """
    cost = np.asarray(cost, dtype=np.float64)
    n, m = cost.shape
    if n == 0 or m == 0:
        return np.zeros((0, 2), np.int64), np.arange(n, dtype=np.int64), np.arange(m, dtype=np.int64)
    allowed = cost <= threshold  # False for NaN and inf
    row_used, col_used = allowed.any(axis=1), allowed.any(axis=0)
    no_rivals = np.count_nonzero(allowed) == np.count_nonzero(row_used) == np.count_nonzero(col_used)
    if no_rivals and (cost[allowed] < threshold).all():
        # No row or column has a rival and every allowed pair beats leaving both unmatched: the
        # only minimum matches them all (the common frame, where people are apart).
        matches = np.argwhere(allowed).astype(np.int64)  # sorted by row
        return matches, np.flatnonzero(~row_used), np.flatnonzero(~col_used)
    # Square extension: row i may take the dummy column n+i and column j the dummy row n+j, each
    # at half the threshold, so an unmatched pair costs the threshold. Forbidden pairs cost more
    # than any such detour and are never chosen.
    forbidden = 2.0 * abs(threshold) + 1.0 + np.abs(np.where(allowed, cost, 0.0)).sum()
    extended = np.zeros((n + m, m + n))
    extended[:n, :m] = np.where(allowed, cost, forbidden)
    extended[:n, m:] = forbidden
    extended[n:, :m] = forbidden
    extended[np.arange(n), m + np.arange(n)] = threshold / 2.0
    extended[n + np.arange(m), np.arange(m)] = threshold / 2.0
    rows, cols = linear_sum_assignment(extended)
    real = (rows < n) & (cols < m)
    rows, cols = rows[real], cols[real]
    keep = allowed[rows, cols]
    matches = np.stack([rows[keep], cols[keep]], axis=1).astype(np.int64)
    row_free = np.ones(n, bool)
    row_free[matches[:, 0]] = False
    col_free = np.ones(m, bool)
    col_free[matches[:, 1]] = False
    return matches, np.flatnonzero(row_free), np.flatnonzero(col_free)
