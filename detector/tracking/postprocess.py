"""Offline clean-up of a finished sequence's tracks before they are written.

Rows are ``[N, 7]`` frame, id, x, y, w, h, score (MOTChallenge boxes: top-left corner, width
and height in pixels; frames 1-based).
"""

from __future__ import annotations

import numpy as np


def interpolate_gaps(rows: np.ndarray, max_gap: int = 20) -> np.ndarray:
    """Fill the frames where a track was lost and found again within ``max_gap`` frames with
    linearly interpolated boxes (ByteTrack's offline step for MOTChallenge results).

    An interpolated row's score is the lower of the two rows around its gap. Returns all rows
    (the given and the new ones) sorted by frame, then id. ``max_gap <= 1`` returns ``rows``
    sorted.
    """
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 7)
    added = []
    if max_gap > 1 and len(rows):
        order = np.lexsort((rows[:, 0], rows[:, 1]))  # by id, then frame
        by_id = rows[order]
        same = by_id[1:, 1] == by_id[:-1, 1]
        gap = by_id[1:, 0] - by_id[:-1, 0]
        for i in np.flatnonzero(same & (gap > 1) & (gap <= max_gap)):
            before, after = by_id[i], by_id[i + 1]
            steps = np.arange(1, int(gap[i]))[:, None] / gap[i]
            boxes = before[2:6] + steps * (after[2:6] - before[2:6])
            frames = before[0] + np.arange(1, int(gap[i]))
            score = min(before[6], after[6])
            added.append(np.column_stack([frames, np.full(len(frames), before[1]), boxes, np.full(len(frames), score)]))
    out = np.concatenate([rows, *added]) if added else rows
    return out[np.lexsort((out[:, 1], out[:, 0]))]
