"""ByteTrack-style multi-object tracker: Kalman prediction, IoU association in two stages
(high-score detections, then low-score ones), a tentative -> confirmed -> lost -> removed life
cycle, stable integer ids.

Per frame, ``ByteTracker.update(boxes, scores, labels)`` takes detections (``[N, 4]`` x1, y1,
x2, y2 pixels, ``[N]`` scores, ``[N]`` class labels) and returns the confirmed tracks matched in
that frame. All track state lives in arrays, so prediction and update run once per frame for
all tracks together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from detector.errors import ConfigError
from detector.registry import TRACKERS
from detector.tracking.geometry import box_iou
from detector.tracking.kalman import CHI2_95, KalmanFilter, cxcyah_to_xyxy, xyxy_to_cxcyah
from detector.tracking.matching import COSTS, linear_assignment

TENTATIVE, CONFIRMED, LOST = 0, 1, 2


@dataclasses.dataclass
class Tracks:
    """Tracks of one frame: ``boxes`` ``[K, 4]`` xyxy pixels, ``ids`` ``[K]`` int64 (from 1),
    ``scores`` ``[K]`` (the matched detection's), ``labels`` ``[K]`` int64."""

    boxes: np.ndarray
    ids: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


@TRACKERS.register()
class ByteTracker:
    """ByteTrack association (Zhang et al., 2022) on a SORT-style Kalman filter.

    Each frame: (1) confirmed and lost tracks are matched to detections scoring at least
    ``high_threshold`` (cost ``cost`` (``iou``, ``giou`` or ``centre``), times the detection score
    when ``fuse_score``; pairs costing more than ``match_threshold`` never match); (2) confirmed
    tracks still unmatched are matched to detections scoring in ``[low_threshold, high_threshold)``
    (IoU cost, ``second_match_threshold``), which keeps people through partial occlusions;
    (3) tentative tracks are matched to the remaining high-score detections
    (``unconfirmed_match_threshold``); a tentative track is confirmed, and gets its id, after
    ``min_hits`` consecutive hits, and dropped at its first miss; (4) high-score detections left
    over and scoring at least ``new_track_threshold`` start tentative tracks (confirmed at once
    on the first frame with ``confirm_first_frame``, as ByteTrack does). A confirmed track that
    misses a frame is lost; lost tracks keep being predicted and are removed after ``max_age``
    frames at 30 fps, scaled to ``frame_rate``. ``gate``: also forbid pairs whose squared
    Mahalanobis distance exceeds the chi-square 95 % quantile. ``classes``: labels to track
    (default ``[0]``, COCO's person; ``None`` tracks every class); tracks and detections of
    different classes never match. ``output_box``: ``"kalman"`` (the filtered state) or
    ``"detection"`` (the matched detection's box).
    """

    def __init__(
        self,
        high_threshold: float = 0.5,
        low_threshold: float = 0.1,
        new_track_threshold: float = 0.6,
        match_threshold: float = 0.8,
        second_match_threshold: float = 0.5,
        unconfirmed_match_threshold: float = 0.7,
        fuse_score: bool = True,
        cost: str = "iou",
        gate: bool = False,
        min_hits: int = 2,
        confirm_first_frame: bool = True,
        max_age: int = 30,
        frame_rate: float = 30.0,
        classes: Sequence[int] | None = (0,),
        output_box: str = "kalman",
    ) -> None:
        if not 0.0 <= low_threshold <= high_threshold <= 1.0:
            raise ConfigError(
                f"tracker: expected 0 <= low_threshold <= high_threshold <= 1, got {low_threshold}, {high_threshold}"
            )
        if cost not in COSTS:
            raise ConfigError(f"tracker.cost: expected one of {', '.join(COSTS)}, got {cost!r}")
        if output_box not in ("kalman", "detection"):
            raise ConfigError(f"tracker.output_box: expected 'kalman' or 'detection', got {output_box!r}")
        if min_hits < 1 or max_age < 0 or frame_rate <= 0:
            raise ConfigError(
                "tracker: expected min_hits >= 1, max_age >= 0, frame_rate > 0, "
                f"got {min_hits}, {max_age}, {frame_rate}"
            )
        self.high_threshold = float(high_threshold)
        self.low_threshold = float(low_threshold)
        self.new_track_threshold = float(new_track_threshold)
        self.match_threshold = float(match_threshold)
        self.second_match_threshold = float(second_match_threshold)
        self.unconfirmed_match_threshold = float(unconfirmed_match_threshold)
        self.fuse_score = bool(fuse_score)
        self.cost = COSTS[cost]
        self.gate = bool(gate)
        self.min_hits = int(min_hits)
        self.confirm_first_frame = bool(confirm_first_frame)
        self.max_lost_frames = max(0, round(max_age * frame_rate / 30.0))
        self.classes = None if classes is None else np.asarray(list(classes), dtype=np.int64)
        self.output_box = output_box
        self.kalman = KalmanFilter()
        self.reset()

    def reset(self) -> None:
        """Forget every track and restart ids at 1 (a new sequence)."""
        self.frame = 0
        self.next_id = 1
        self.mean = np.zeros((0, 8))
        self.cov = np.zeros((0, 8, 8))
        self.ids = np.zeros(0, np.int64)  # 0 until confirmed
        self.state = np.zeros(0, np.int64)
        self.hits = np.zeros(0, np.int64)
        self.missed = np.zeros(0, np.int64)  # frames since the last match
        self.scores = np.zeros(0)
        self.labels = np.zeros(0, np.int64)
        self.det_boxes = np.zeros((0, 4))

    @property
    def num_tracks(self) -> int:
        """Tracks held (tentative, confirmed and lost)."""
        return len(self.ids)

    # ------------------------------------------------------------------ association helpers
    def _costs(
        self, tracks: np.ndarray, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, kind: str, fuse: bool
    ) -> np.ndarray:
        track_boxes = self._predicted_boxes[tracks]
        cost = 1.0 - box_iou(track_boxes, boxes) if kind == "iou" else self.cost(track_boxes, boxes)
        if fuse:
            cost = 1.0 - (1.0 - cost) * scores[None, :]
        cost[self.labels[tracks][:, None] != labels[None, :]] = np.inf
        if self.gate and len(tracks) and len(boxes):
            distance = self.kalman.gating_distance(self.mean[tracks], self.cov[tracks], xyxy_to_cxcyah(boxes))
            cost[distance > CHI2_95[4]] = np.inf
        return cost

    def _match(self, tracks: np.ndarray, dets: np.ndarray, boxes, scores, labels, threshold, kind, fuse):
        """Hungarian matching of track rows ``tracks`` to detection rows ``dets``; returns matched
        (track rows, detection rows) and the unmatched of each."""
        if len(tracks) == 0 or len(dets) == 0:
            return tracks[:0], dets[:0], tracks, dets
        cost = self._costs(tracks, boxes[dets], scores[dets], labels[dets], kind, fuse)
        matches, free_tracks, free_dets = linear_assignment(cost, threshold)
        return tracks[matches[:, 0]], dets[matches[:, 1]], tracks[free_tracks], dets[free_dets]

    def _apply(self, tracks: np.ndarray, dets: np.ndarray, boxes, scores) -> None:
        if len(tracks) == 0:
            return
        self.mean[tracks], self.cov[tracks] = self.kalman.update(
            self.mean[tracks], self.cov[tracks], xyxy_to_cxcyah(boxes[dets])
        )
        self.hits[tracks] += 1
        self.missed[tracks] = 0
        self.scores[tracks] = scores[dets]
        self.det_boxes[tracks] = boxes[dets]

    def _confirm(self, tracks: np.ndarray) -> None:
        new = tracks[self.ids[tracks] == 0]
        self.ids[new] = np.arange(self.next_id, self.next_id + len(new))
        self.next_id += len(new)
        self.state[tracks] = CONFIRMED

    # ------------------------------------------------------------------------------ update
    def update(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray | None = None) -> Tracks:
        """Advance one frame with this frame's detections (may be empty); returns its tracks.

        ``boxes``: ``[N, 4]`` xyxy pixels; ``scores``: ``[N]``; ``labels``: ``[N]`` class labels
        (all 0 when None). Detections of untracked classes or below ``low_threshold`` are ignored.
        """
        self.frame += 1
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        labels = np.zeros(len(boxes), np.int64) if labels is None else np.asarray(labels, np.int64).reshape(-1)
        if not (len(boxes) == len(scores) == len(labels)):
            raise ValueError(f"update: {len(boxes)} boxes, {len(scores)} scores and {len(labels)} labels")
        # Non-finite detections (a detector gone wrong) are dropped: one would poison its track.
        finite = np.isfinite(boxes).all(axis=1) & np.isfinite(scores)
        keep = finite & (scores >= self.low_threshold) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if self.classes is not None:
            keep &= (labels[:, None] == self.classes[None, :]).any(axis=1)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        high = np.flatnonzero(scores >= self.high_threshold)
        low = np.flatnonzero(scores < self.high_threshold)

        if self.num_tracks:
            # A track that is not being followed keeps its position but not its growth.
            self.mean[self.state != CONFIRMED, 7] = 0.0
            self.mean, self.cov = self.kalman.predict(self.mean, self.cov)
        self._predicted_boxes = cxcyah_to_xyxy(self.mean)
        rows = np.arange(self.num_tracks)
        pool = rows[(self.state == CONFIRMED) | (self.state == LOST)]
        tentative = rows[self.state == TENTATIVE]
        # 1. followed and lost tracks vs confident detections
        hit1, det1, pool_left, high_left = self._match(
            pool, high, boxes, scores, labels, self.match_threshold, "custom", self.fuse_score
        )
        self._apply(hit1, det1, boxes, scores)
        self._confirm(hit1)
        # 2. still-followed tracks vs weak detections (lost tracks are not revived by them)
        followed = pool_left[self.state[pool_left] == CONFIRMED]
        hit2, det2, _, _ = self._match(followed, low, boxes, scores, labels, self.second_match_threshold, "iou", False)
        self._apply(hit2, det2, boxes, scores)
        # 3. tentative tracks vs the confident detections left
        hit3, det3, tentative_left, high_left = self._match(
            tentative, high_left, boxes, scores, labels, self.unconfirmed_match_threshold, "custom", self.fuse_score
        )
        self._apply(hit3, det3, boxes, scores)
        self._confirm(hit3[self.hits[hit3] >= self.min_hits])

        matched = np.zeros(self.num_tracks, bool)
        matched[np.concatenate([hit1, hit2, hit3])] = True
        self.missed[~matched] += 1
        self.state[~matched & (self.state == CONFIRMED)] = LOST
        drop = np.zeros(self.num_tracks, bool)
        drop[tentative_left] = True
        drop |= (self.state == LOST) & (self.missed > self.max_lost_frames)
        self._keep(~drop)

        # 4. new tracks from confident detections nobody claimed
        new = high_left[scores[high_left] >= self.new_track_threshold]
        if len(new):
            self._start(new, boxes, scores, labels)

        shown = np.flatnonzero((self.state == CONFIRMED) & (self.missed == 0))
        out_boxes = cxcyah_to_xyxy(self.mean[shown]) if self.output_box == "kalman" else self.det_boxes[shown]
        return Tracks(out_boxes, self.ids[shown].copy(), self.scores[shown].copy(), self.labels[shown].copy())

    def _keep(self, keep: np.ndarray) -> None:
        for name in ("mean", "cov", "ids", "state", "hits", "missed", "scores", "labels", "det_boxes"):
            setattr(self, name, getattr(self, name)[keep])

    def _start(self, dets: np.ndarray, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> None:
        mean, cov = self.kalman.initiate(xyxy_to_cxcyah(boxes[dets]))
        n = len(dets)
        first = self.confirm_first_frame and self.frame == 1
        start = self.num_tracks
        self.mean = np.concatenate([self.mean, mean])
        self.cov = np.concatenate([self.cov, cov])
        self.ids = np.concatenate([self.ids, np.zeros(n, np.int64)])
        self.state = np.concatenate([self.state, np.full(n, TENTATIVE)])
        self.hits = np.concatenate([self.hits, np.ones(n, np.int64)])
        self.missed = np.concatenate([self.missed, np.zeros(n, np.int64)])
        self.scores = np.concatenate([self.scores, scores[dets]])
        self.labels = np.concatenate([self.labels, labels[dets]])
        self.det_boxes = np.concatenate([self.det_boxes, boxes[dets]])
        if first or self.min_hits <= 1:
            self._confirm(np.arange(start, start + n))
