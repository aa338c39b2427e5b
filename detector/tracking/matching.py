"""Association costs between tracks and detections, and Hungarian assignment with a threshold.

Boxes are ``[N, 4]`` x1, y1, x2, y2 pixels (numpy). Costs are ``[tracks, detections]``; lower is
better; a pair whose cost is above the threshold is never matched.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from detector.tracking.geometry import box_iou, generalized_box_iou


def iou_cost(tracks: np.ndarray, detections: np.ndarray) -> np.ndarray:
    """``1 - IoU``: 0 for identical boxes, 1 for disjoint ones."""
    return 1.0 - box_iou(tracks, detections)


def giou_cost(tracks: np.ndarray, detections: np.ndarray) -> np.ndarray:
    """``(1 - GIoU) / 2`` in [0, 1]: like ``iou_cost`` but still ordered for disjoint boxes
    (farther apart costs more)."""
    return (1.0 - generalized_box_iou(tracks, detections)) / 2.0


def centre_distance_cost(tracks: np.ndarray, detections: np.ndarray) -> np.ndarray:
    """Distance between box centres divided by the track box's diagonal (0 = same centre)."""
    a = np.asarray(tracks, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(detections, dtype=np.float64).reshape(-1, 4)
    ca = (a[:, :2] + a[:, 2:]) / 2
    cb = (b[:, :2] + b[:, 2:]) / 2
    diagonal = np.hypot(a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]).clip(1e-9)
    return np.linalg.norm(ca[:, None, :] - cb[None, :, :], axis=2) / diagonal[:, None]


COSTS = {"iou": iou_cost, "giou": giou_cost, "centre": centre_distance_cost}


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
