"""Offline clean-up of a finished sequence's tracks before they are written: joining split
tracks (``link_tracklets``), extending tracks at their ends (``extend_tracks``) and filling the
gaps of tracks that are not sparse (``interpolate_gaps``), in that order.

Rows are ``[N, 7]`` frame, id, x, y, w, h, score (MOTChallenge boxes: top-left corner, width
and height in pixels; frames 1-based).
"""

from __future__ import annotations

import numpy as np

from detector.tracking.geometry import box_iou_xywh
from detector.tracking.matching import linear_assignment
from detector.tracking.mot_io import group_by_frame


def interpolate_gaps(
    rows: np.ndarray, max_gap: int = 20, min_coverage: float = 0.0, min_track_score: float = 0.0
) -> np.ndarray:
    """Fill the frames where a track was lost and found again within ``max_gap`` frames with
    linearly interpolated boxes (ByteTrack's offline step for MOTChallenge results).

    Only tracks with rows in at least ``min_coverage`` of the frames from their first to their
    last are filled: a sparse track is most often a stray box or clutter that the tracker kept
    re-finding, and filling its gaps turns occasional false positives into continuous ones. Nor
    are tracks whose rows' mean score is below ``min_track_score``: a track on clutter is weak. An
    interpolated row's score is the lower of the two rows around its gap. Returns all rows (the
    given and the new ones) sorted by frame, then id. ``max_gap <= 1`` returns ``rows`` sorted.
    """
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 7)
    added = []
    if max_gap > 1 and len(rows):
        order = np.lexsort((rows[:, 0], rows[:, 1]))  # by id, then frame
        by_id = rows[order]
        same = by_id[1:, 1] == by_id[:-1, 1]
        gap = by_id[1:, 0] - by_id[:-1, 0]
        _, starts, counts = np.unique(by_id[:, 1], return_index=True, return_counts=True)
        spans = by_id[starts + counts - 1, 0] - by_id[starts, 0] + 1  # rows are sorted by frame within an id
        filled = (counts / spans >= min_coverage) & (_track_mean_scores(by_id) >= min_track_score)
        filled = np.repeat(filled, counts)[:-1]
        for i in np.flatnonzero(same & filled & (gap > 1) & (gap <= max_gap)):
            before, after = by_id[i], by_id[i + 1]
            steps = np.arange(1, int(gap[i]))[:, None] / gap[i]
            boxes = before[2:6] + steps * (after[2:6] - before[2:6])
            frames = before[0] + np.arange(1, int(gap[i]))
            score = min(before[6], after[6])
            added.append(np.column_stack([frames, np.full(len(frames), before[1]), boxes, np.full(len(frames), score)]))
    out = np.concatenate([rows, *added]) if added else rows
    return out[np.lexsort((out[:, 1], out[:, 0]))]


def _track_mean_scores(rows: np.ndarray) -> np.ndarray:
    """``[T]`` mean score of each track's rows, tracks in ascending id order (as ``np.unique``)."""
    inverse = np.unique(rows[:, 1], return_inverse=True)[1]
    return np.bincount(inverse, weights=rows[:, 6]) / np.bincount(inverse)


def _track_ends(rows: np.ndarray, fit_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per track (ids in ascending order): ``[T]`` ids, ``[T, 2]`` first and last frame, ``[T, 2, 4]``
    first and last MOT box, and ``[T, 2, 2]`` centre velocities (pixels per frame) fitted on the
    ``fit_frames`` rows at the start and at the end."""
    by_id = rows[np.lexsort((rows[:, 0], rows[:, 1]))]
    ids, starts = np.unique(by_id[:, 1], return_index=True)
    frames, boxes, velocities = np.zeros((len(ids), 2)), np.zeros((len(ids), 2, 4)), np.zeros((len(ids), 2, 2))
    for t, own in enumerate(np.split(by_id, starts[1:])):
        frames[t], boxes[t] = own[[0, -1], 0], own[[0, -1], 2:6]
        centres = own[:, 2:4] + own[:, 4:6] / 2
        for side, part in enumerate((slice(0, fit_frames), slice(-fit_frames, None))):
            offset = own[part, 0] - own[part, 0].mean()
            if (offset**2).sum() > 0:
                velocities[t, side] = offset @ (centres[part] - centres[part].mean(axis=0)) / (offset @ offset)
    return ids, frames, boxes, velocities


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
    ids, frames, boxes, velocities = _track_ends(rows, fit_frames)
    gap = frames[None, :, 0] - frames[:, None, 1]  # [A, B] frames from A's end to B's start
    cost = np.full(gap.shape, np.inf)
    for a, b in zip(*np.nonzero((gap >= 1) & (gap <= max_gap)), strict=True):
        half = gap[a, b] / 2
        # Moving a box's centre with its size kept moves its top-left corner by as much.
        end_a, start_b = boxes[a, 1].copy(), boxes[b, 0].copy()
        end_a[:2] += velocities[a, 1] * half
        start_b[:2] -= velocities[b, 0] * half
        cost[a, b] = 1.0 - box_iou_xywh(end_a, start_b)[0, 0]
    matches, _, _ = linear_assignment(cost, 1.0 - min_iou)
    # Each successor starts after its predecessor ends: in start order a chain passes its first id on.
    new_id = ids.copy()
    for a, b in sorted(matches.tolist(), key=lambda m: frames[m[0], 0]):
        new_id[b] = new_id[a]
    out = rows.copy()
    out[:, 1] = new_id[np.searchsorted(ids, rows[:, 1])]
    return out


def extend_tracks(
    rows: np.ndarray,
    detections: np.ndarray,
    max_miss: int = 2,
    min_iou: float = 0.5,
    min_score: float = 0.1,
    fit_frames: int = 10,
    track_labels: dict[int, int] | None = None,
    min_track_score: float = 0.0,
) -> np.ndarray:
    """Offline: extend each track at both ends with the detections, weak ones included, that
    continue it: the tracker's second (low-score) association run outward from each end. Going
    backwards recovers the frames before a track started, when its person was seen only weakly
    (entering, or half hidden), which an online tracker cannot go back to.

    ``detections`` ``[M, 7]``: frame, label, x, y, w, h, score (MOT boxes, pixels). From a track's
    first (last) row, frame by frame towards the sequence's first (last) detection frame, its box
    moves at the constant centre velocity fitted on its ``fit_frames`` rows nearest that end (size
    kept); the detection overlapping it best, by IoU >= ``min_iou``, with score >= ``min_score``,
    the track's label (``track_labels``: id -> label; None: one class) and no IoU >= ``min_iou``
    with a row already in its frame, is added under the track's id (its own box and score) and
    becomes the track's box. A track stops after more than ``max_miss`` frames in a row without
    one; the frames it skipped are left to ``interpolate_gaps``. Tracks whose rows' mean score is
    below ``min_track_score`` are not extended: tracks on clutter and stray boxes are mostly
    weak, and extending them over their weak detections adds false positives. Tracks are
    extended in id order. Rows ``[N, 7]`` as ``interpolate_gaps``; returns them with the new
    rows, sorted by frame, then id. ``max_miss < 0`` returns ``rows`` sorted.
    """
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 7)
    detections = np.asarray(detections, dtype=np.float64).reshape(-1, 7)
    detections = detections[detections[:, 6] >= min_score]
    if max_miss < 0 or len(rows) == 0 or len(detections) == 0:
        return rows[np.lexsort((rows[:, 1], rows[:, 0]))]
    by_frame = group_by_frame(detections)
    shown = {frame: list(own[:, 2:6]) for frame, own in group_by_frame(rows).items()}
    first, last = min(by_frame), max(by_frame)
    ids, frames, boxes, velocities = _track_ends(rows, fit_frames)
    mean_scores = _track_mean_scores(rows)
    added = []
    for t, track_id in enumerate(ids.tolist()):
        if mean_scores[t] < min_track_score:
            continue
        label = None if track_labels is None else track_labels.get(int(track_id))
        for side, step in ((0, -1), (1, 1)):
            box, frame, misses = boxes[t, side].copy(), int(frames[t, side]), 0
            while misses <= max_miss and first <= frame + step <= last:
                frame += step
                box[:2] += velocities[t, side] * step
                candidates = by_frame.get(frame)
                best = -1
                if candidates is not None:
                    iou = box_iou_xywh(box, candidates[:, 2:6])[0]
                    if label is not None:
                        iou[candidates[:, 1] != label] = 0.0
                    if shown.get(frame):
                        iou[box_iou_xywh(candidates[:, 2:6], np.array(shown[frame])).max(axis=1) >= min_iou] = 0.0
                    best = int(iou.argmax()) if iou.max() >= min_iou else -1
                if best < 0:
                    misses += 1
                    continue
                box, misses = candidates[best, 2:6].copy(), 0
                shown.setdefault(frame, []).append(box)
                added.append([frame, track_id, *box, candidates[best, 6]])
    out = np.concatenate([rows, np.array(added).reshape(-1, 7)])
    return out[np.lexsort((out[:, 1], out[:, 0]))]
