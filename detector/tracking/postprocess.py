"""Offline clean-up of a finished sequence's tracks before they are written.

Rows are ``[N, 7]`` frame, id, x, y, w, h, score (MOTChallenge boxes: top-left corner, width
and height in pixels; frames 1-based).
"""

from __future__ import annotations

import numpy as np

from detector.tracking.geometry import box_iou_xywh
from detector.tracking.matching import linear_assignment


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


def _track_ends(rows: np.ndarray, fit_frames: int) -> dict[int, tuple[float, float, np.ndarray, np.ndarray]]:
    """Per id: first frame, last frame, and the ``[2, 4]`` first / last box (centre x, y, w, h) and
    ``[2, 2]`` centre velocities (pixels per frame) fitted on the ``fit_frames`` rows at each end."""
    ends = {}
    for track_id in np.unique(rows[:, 1]):
        own = rows[rows[:, 1] == track_id]
        own = own[np.argsort(own[:, 0], kind="stable")]
        centres = own[:, 2:4] + own[:, 4:6] / 2
        boxes, velocities = np.zeros((2, 4)), np.zeros((2, 2))
        for side, part in enumerate((slice(0, fit_frames), slice(-fit_frames, None))):
            frames, points = own[part, 0], centres[part]
            boxes[side] = np.concatenate([centres[0 if side == 0 else -1], own[0 if side == 0 else -1, 4:6]])
            if len(frames) > 1 and np.ptp(frames) > 0:
                offset = frames - frames.mean()
                velocities[side] = offset @ (points - points.mean(axis=0)) / (offset @ offset)
        ends[int(track_id)] = (own[0, 0], own[-1, 0], boxes, velocities)
    return ends


def link_tracklets(rows: np.ndarray, max_gap: int = 60, min_iou: float = 0.5, fit_frames: int = 10) -> np.ndarray:
    """Offline: give a track's id to the track that continues it, when one person's trajectory was
    split in two (lost longer than the tracker's memory, or re-found too far from its prediction).

    Track B continues track A when B starts 1 to ``max_gap`` frames after A ends and the two,
    each moved to the middle of the gap at the constant centre velocity fitted on its
    ``fit_frames`` rows nearest the gap (sizes kept), overlap with IoU >= ``min_iou``. Each track
    takes at most one successor and one predecessor (Hungarian assignment on ``1 - IoU``); chains
    keep their first track's id. Rows as ``interpolate_gaps`` (``[N, 7]``, MOT boxes); returns
    them with ids replaced, in the same order. ``max_gap <= 0`` returns ``rows`` unchanged.
    """
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 7)
    if max_gap <= 0 or len(rows) == 0:
        return rows
    ends = _track_ends(rows, fit_frames)
    ids = sorted(ends, key=lambda i: (ends[i][0], i))
    first = np.array([ends[i][0] for i in ids])
    last = np.array([ends[i][1] for i in ids])
    gap = first[None, :] - last[:, None]  # [A, B] frames from A's end to B's start
    cost = np.full(gap.shape, np.inf)
    for a, b in zip(*np.nonzero((gap >= 1) & (gap <= max_gap)), strict=True):
        half = gap[a, b] / 2
        box_a, box_b = ends[ids[a]][2][1].copy(), ends[ids[b]][2][0].copy()
        box_a[:2] += ends[ids[a]][3][1] * half
        box_b[:2] -= ends[ids[b]][3][0] * half
        corners = np.stack([box_a, box_b])
        corners = np.concatenate([corners[:, :2] - corners[:, 2:] / 2, corners[:, 2:]], axis=1)
        cost[a, b] = 1.0 - box_iou_xywh(corners[:1], corners[1:])[0, 0]
    matches, _, _ = linear_assignment(cost, 1.0 - min_iou)
    successor = dict(zip(matches[:, 0].tolist(), matches[:, 1].tolist(), strict=True))
    new_id = {i: i for i in ids}
    for a in sorted(successor, key=lambda k: first[k]):  # predecessors first: chains pass the first id on
        new_id[ids[successor[a]]] = new_id[ids[a]]
    out = rows.copy()
    out[:, 1] = [new_id[int(i)] for i in rows[:, 1]]
    return out
