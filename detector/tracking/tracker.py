"""Multi-object trackers on one array-based engine: Kalman prediction, association in stages,
a tentative -> confirmed -> lost -> removed life cycle, stable integer ids.

``ByteTracker`` (ByteTrack's two-stage association) carries every option; ``OCSortTracker``
and ``BotSortTracker`` are the same engine with OC-SORT's and BoT-SORT's ideas switched on by
default. Per frame, ``update(boxes, scores, labels, image=None)`` takes detections (``[N, 4]``
x1, y1, x2, y2 pixels, ``[N]`` scores, ``[N]`` class labels; the frame for camera-motion
compensation and appearance) and returns the confirmed tracks matched in that frame. All track
state lives in arrays, so prediction and update run once per frame for all tracks together.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Sequence

import numpy as np

from detector.errors import ConfigError
from detector.registry import TRACKERS
from detector.tracking.appearance import ReID, TorchReID, cosine_distance
from detector.tracking.camera_motion import CAMERA_MOTION_METHODS, CameraMotion
from detector.tracking.geometry import box_iou
from detector.tracking.kalman import CHI2_95, CHI2_99, KalmanFilter, KalmanFilterXYWH
from detector.tracking.matching import COSTS, linear_assignment, mahalanobis_similarity, shape_similarity

TENTATIVE, CONFIRMED, LOST = 0, 1, 2
KALMAN_FILTERS = {"xyah": KalmanFilter, "xywh": KalmanFilterXYWH}


@dataclasses.dataclass
class Tracks:
    """Tracks of one frame: ``boxes`` ``[K, 4]`` xyxy pixels, ``ids`` ``[K]`` int64 (from 1),
    ``scores`` ``[K]`` (the matched detection's), ``labels`` ``[K]`` int64. ``earlier``: ``[M, 7]``
    frame, id, x1, y1, x2, y2, score: the detections of the tracks confirmed in this frame from
    the frames before their confirmation (at most ``min_hits - 1`` per track), which only an
    offline result can still show."""

    boxes: np.ndarray
    ids: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    earlier: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 7)))

    def __len__(self) -> int:
        return len(self.ids)


def box_centres(boxes: np.ndarray) -> np.ndarray:
    """``[N, 2]`` centres of ``[N, 4]`` xyxy boxes."""
    return (boxes[:, :2] + boxes[:, 2:]) / 2


def direction_consistency(
    previous: np.ndarray, has_previous: np.ndarray, velocity: np.ndarray, boxes: np.ndarray
) -> np.ndarray:
    """OC-SORT's velocity-direction consistency ``[T, D]`` in [-0.5, 0.5]: ``(pi/2 - angle) / pi``
    where ``angle`` is between each track's motion direction ``velocity`` ``[T, 2]`` (unit x, y;
    zero when unknown) and the direction from its earlier observation ``previous`` ``[T, 4]`` xyxy
    to each detection ``boxes`` ``[D, 4]``. 0.5 for the same direction, -0.5 for the opposite;
    0 for tracks without an earlier observation (``has_previous`` False) or a velocity."""
    step = box_centres(boxes)[None, :, :] - box_centres(previous)[:, None, :]  # [T, D, 2]
    step /= np.maximum(np.linalg.norm(step, axis=2, keepdims=True), 1e-6)
    cosine = np.clip((step * velocity[:, None, :]).sum(axis=2), -1.0, 1.0)
    known = has_previous & (np.abs(velocity).sum(axis=1) > 0)
    return np.where(known[:, None], (np.pi / 2 - np.arccos(cosine)) / np.pi, 0.0)


class FramePairs:
    """What one frame's association reads about every (track, detection) pair, each computed once
    when first asked for: ``predicted`` ``[T, 4]`` xyxy boxes of the tracks' predicted states,
    their ``iou`` ``[T, N]`` with the detections ``boxes`` ``[N, 4]`` and the squared Mahalanobis
    ``distance`` ``[T, N]`` of the detections from the predictions. It keeps a copy of the
    predicted state: a track matched in one stage is updated, but never offered again that frame."""

    def __init__(self, kalman: KalmanFilter, mean: np.ndarray, cov: np.ndarray, boxes: np.ndarray) -> None:
        self.kalman, self.mean, self.cov, self.boxes = kalman, mean.copy(), cov.copy(), boxes
        self.predicted = kalman.to_xyxy(mean)

    @functools.cached_property
    def iou(self) -> np.ndarray:
        return box_iou(self.predicted, self.boxes)

    @functools.cached_property
    def distance(self) -> np.ndarray:
        return self.kalman.gating_distance(self.mean, self.cov, self.kalman.from_xyxy(self.boxes))


@TRACKERS.register()
class ByteTracker:
    """ByteTrack association (Zhang et al., 2022) on a SORT-style Kalman filter, with OC-SORT's,
    BoT-SORT's and BoostTrack's ideas as options (all off in the constructor; the packaged
    default.yaml, ``detector track``'s tracker, turns several on).

    Each frame: (1) confirmed and lost tracks are matched to detections scoring at least
    ``high_threshold`` (cost ``cost`` (``iou``, ``giou``, ``centre`` or ``hmiou``, Hybrid-SORT's
    height-modulated IoU), times the detection score when ``fuse_score``; pairs costing more than
    ``match_threshold`` never match); (2) confirmed
    tracks still unmatched are matched to detections scoring in ``[low_threshold, high_threshold)``
    (IoU cost, ``second_match_threshold``; lost ones too with ``low_score_recovery``), which
    keeps people through partial occlusions;
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

    Options: ``motion``: the Kalman state, ``"xyah"`` (centre, aspect, height: SORT, ByteTrack)
    or ``"xywh"`` (BoT-SORT). ``camera_motion``: ``"sparse_flow"`` or ``"ecc"`` moves every
    track by the camera's motion between frames (``CameraMotion``; only when ``update`` is given
    the image). OC-SORT (Cao et al., 2023): ``observation_update`` re-runs a re-found track's
    filter from its last observation through boxes interpolated over the gap;
    ``direction_weight`` > 0 adds the velocity-direction consistency over ``direction_delta_t``
    frames to the cost of stages 1 and 3 (times the detection score); ``observation_recovery``
    matches tracks still unmatched after stage 2 by IoU of their last observed box (stage 2b).
    Appearance: ``reid`` (a ``ReID`` or the path of a ``torch.export`` ``.pt2`` model, crops resized to
    ``reid_input_size``) blends into the cost of stages 1 and 3 as ``(1 - appearance_weight) *
    motion + appearance_weight * cosine``, the cosine distance ``(1 - cos) / 2`` counting as 1
    above ``appearance_threshold``; only pairs the motion cost allows can match. A track's
    embedding is an EMA (``embedding_momentum``) of its high-score detections'.

    BoostTrack's detection-confidence boosts (Stanojević and Todorović, 2024) change the scores
    used to associate and to start tracks, not the scores tracks report: ``boost_likely`` > 0
    raises a detection's score to ``boost_likely`` times its best IoU with a track's prediction
    (its DLO boost; published 0.65); ``boost_unlikely`` raises a detection that scores below the
    start threshold, lies beyond the chi-square 99 % Mahalanobis distance (4 dof) of every
    confirmed or lost track and overlaps (IoU > 0.3) no stronger such detection to that
    threshold (its DUO boost: someone nobody follows yet). Its similarity boosts add to the
    similarity of stages 1 and 3 (subtract from the cost) ``boost_iou`` times ``c`` times the IoU,
    ``boost_shape`` times ``c`` times the shape similarity (``shape_similarity``) and
    ``boost_mahalanobis`` times the Mahalanobis similarity (``mahalanobis_similarity``, the
    filter's full innovation covariance, limit the chi-square 99 % quantile), where ``c`` is the
    detection's score times the track's confidence, ``0.9 ** missed frames``, or for a track
    started fewer than 7 frames ago ``0.9 ** (7 - its age)`` (published 0.5, 0.25, 0.25). Only
    pairs the motion cost allows can match, and an unmatched pair still costs the stage's
    threshold (ByteTrack's assignment; with the direction or appearance terms, OC-SORT's: every
    allowed pair is worth matching). ``low_score_recovery``: stage 2 also offers weak detections
    to lost tracks, which ByteTrack keeps for confirmed ones.
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
        motion: str = "xyah",
        camera_motion: str | None = None,
        camera_motion_downscale: int = 2,
        observation_update: bool = False,
        direction_weight: float = 0.0,
        direction_delta_t: int = 3,
        observation_recovery: bool = False,
        reid: str | ReID | None = None,
        reid_input_size: Sequence[int] = (256, 128),
        appearance_weight: float = 0.5,
        appearance_threshold: float = 0.25,
        embedding_momentum: float = 0.9,
        boost_likely: float = 0.0,
        boost_unlikely: bool = False,
        boost_iou: float = 0.0,
        boost_mahalanobis: float = 0.0,
        boost_shape: float = 0.0,
        low_score_recovery: bool = False,
    ) -> None:
        if not 0.0 <= low_threshold <= high_threshold <= 1.0:
            raise ConfigError(
                f"tracker: expected 0 <= low_threshold <= high_threshold <= 1, got {low_threshold}, {high_threshold}"
            )
        if cost not in COSTS:
            raise ConfigError(f"tracker.cost: expected one of {', '.join(COSTS)}, got {cost!r}")
        if output_box not in ("kalman", "detection"):
            raise ConfigError(f"tracker.output_box: expected 'kalman' or 'detection', got {output_box!r}")
        if motion not in KALMAN_FILTERS:
            raise ConfigError(f"tracker.motion: expected one of {', '.join(KALMAN_FILTERS)}, got {motion!r}")
        if camera_motion is not None and camera_motion not in CAMERA_MOTION_METHODS:
            raise ConfigError(
                f"tracker.camera_motion: expected one of {', '.join(CAMERA_MOTION_METHODS)} or null, "
                f"got {camera_motion!r}"
            )
        if min_hits < 1 or max_age < 0 or frame_rate <= 0 or direction_delta_t < 1:
            raise ConfigError(
                "tracker: expected min_hits >= 1, max_age >= 0, frame_rate > 0, direction_delta_t >= 1, "
                f"got {min_hits}, {max_age}, {frame_rate}, {direction_delta_t}"
            )
        for name, value in (("appearance_weight", appearance_weight), ("embedding_momentum", embedding_momentum),
                            ("boost_likely", boost_likely), ("boost_iou", boost_iou),
                            ("boost_mahalanobis", boost_mahalanobis), ("boost_shape", boost_shape)):  # fmt: skip
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"tracker.{name}: {value}; expected a number in [0, 1]")
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
        self.kalman = KALMAN_FILTERS[motion]()
        self.camera = None if camera_motion is None else CameraMotion(camera_motion, camera_motion_downscale)
        self.observation_update = bool(observation_update)
        self.direction_weight = float(direction_weight)
        self.delta_t = int(direction_delta_t)
        self.observation_recovery = bool(observation_recovery)
        if isinstance(reid, str):
            reid = TorchReID.from_exported(reid, input_size=reid_input_size)
        self.reid = reid
        self.appearance_weight = float(appearance_weight)
        self.appearance_threshold = float(appearance_threshold)
        self.embedding_momentum = float(embedding_momentum)
        self.boost_likely = float(boost_likely)
        self.boost_unlikely = bool(boost_unlikely)
        self.similarity_boosts = (float(boost_iou), float(boost_mahalanobis), float(boost_shape))
        self.low_score_recovery = bool(low_score_recovery)
        self.reset()

    _ARRAYS = ("mean", "cov", "ids", "state", "hits", "missed", "scores", "labels", "det_boxes", "obs_boxes",
               "obs_frames", "obs_mean", "obs_cov", "velocity", "embeddings", "early", "born")  # fmt: skip

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
        self.born = np.zeros(0, np.int64)  # the frame a track started
        self.scores = np.zeros(0)
        self.labels = np.zeros(0, np.int64)
        self.det_boxes = np.zeros((0, 4))  # the last matched detection (the last observation)
        # Observation-centric state: the last ``delta_t`` observations (oldest first, frame -1
        # when empty), the filter right after the last observation, the unit motion direction.
        self.obs_boxes = np.zeros((0, self.delta_t, 4))
        self.obs_frames = np.zeros((0, self.delta_t), np.int64)
        self.obs_mean = np.zeros((0, 8))
        self.obs_cov = np.zeros((0, 8, 8))
        self.velocity = np.zeros((0, 2))
        self.embeddings = np.zeros((0, 0))  # [N, D] once a ReID has embedded something; zero rows: none yet
        # A tentative track's detections (x1, y1, x2, y2, score) before the one that confirms it.
        self.early = np.zeros((0, self.min_hits - 1, 5))
        self._earlier: list[np.ndarray] = []
        if self.camera is not None:
            self.camera.reset()

    @property
    def num_tracks(self) -> int:
        """Tracks held (tentative, confirmed and lost)."""
        return len(self.ids)

    @property
    def _observation_centric(self) -> bool:
        return self.observation_update or self.direction_weight > 0 or self.observation_recovery

    # ------------------------------------------------------------------ association helpers
    def _costs(
        self, tracks: np.ndarray, dets: np.ndarray, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
        kind: str, fuse: bool,
    ) -> np.ndarray:  # fmt: skip
        if kind == "observation":
            cost = 1.0 - box_iou(self.det_boxes[tracks], boxes[dets])
        else:
            iou = self._pairs.iou[tracks[:, None], dets]
            cost = 1.0 - iou if kind == "iou" else self.cost(self._pairs.predicted[tracks], boxes[dets], iou)
        if fuse:
            cost = 1.0 - (1.0 - cost) * scores[dets][None, :]
        cost[self.labels[tracks][:, None] != labels[dets][None, :]] = np.inf
        if self.gate:
            cost[self._pairs.distance[tracks[:, None], dets] > CHI2_95[4]] = np.inf
        return cost

    def _match(self, tracks: np.ndarray, dets: np.ndarray, boxes, scores, labels, threshold, kind, fuse, features=None):
        """Hungarian matching of track rows ``tracks`` to detection rows ``dets``; returns matched
        (track rows, detection rows) and the unmatched of each. ``kind == "custom"`` adds the
        direction and appearance terms that are switched on."""
        if len(tracks) == 0 or len(dets) == 0:
            return tracks[:0], dets[:0], tracks, dets
        cost = self._costs(tracks, dets, boxes, scores, labels, kind, fuse)
        # The direction and appearance terms can raise a cost past the threshold; the boosts only lower it.
        can_raise = self.direction_weight > 0 or features is not None
        if kind == "custom" and (can_raise or any(self.similarity_boosts)):
            # The motion cost decides which pairs may match; the extra terms only rank them.
            allowed = cost <= threshold
            if self.direction_weight > 0:
                previous, has_previous = self._previous_observation(tracks)
                consistency = direction_consistency(previous, has_previous, self.velocity[tracks], boxes[dets])
                cost = cost - self.direction_weight * consistency * scores[dets][None, :]
            if any(self.similarity_boosts):
                cost = cost - self._similarity_boost(tracks, dets, boxes, scores)
            if features is not None and self.embeddings.shape[1]:
                known = np.linalg.norm(self.embeddings[tracks], axis=1) > 0
                distance = cosine_distance(self.embeddings[tracks], features[dets])
                distance[distance > self.appearance_threshold] = 1.0
                blended = (1.0 - self.appearance_weight) * cost + self.appearance_weight * distance
                cost = np.where(known[:, None], blended, cost)
            cost = np.where(allowed, cost, np.inf)
            if can_raise:
                # Every allowed pair is worth matching (OC-SORT's assignment, which maximises the
                # matches); the boosts alone keep ByteTrack's threshold as the cost of no match.
                threshold = threshold + 1.0
        matches, free_tracks, free_dets = linear_assignment(cost, threshold)
        return tracks[matches[:, 0]], dets[matches[:, 1]], tracks[free_tracks], dets[free_dets]

    def _previous_observation(self, tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """OC-SORT's earlier observation of each track: the oldest of those in the last
        ``delta_t`` frames, else the latest. Returns boxes ``[T, 4]`` and whether one exists."""
        frames = self.obs_frames[tracks]
        recent = (frames >= self.frame - self.delta_t) & (frames >= 0)
        column = np.where(recent.any(axis=1), recent.argmax(axis=1), self.delta_t - 1)
        rows = np.arange(len(tracks))
        return self.obs_boxes[tracks][rows, column], frames[rows, column] >= 0

    def _similarity_boost(
        self, tracks: np.ndarray, dets: np.ndarray, boxes: np.ndarray, scores: np.ndarray
    ) -> np.ndarray:
        """``[T, D]`` BoostTrack's similarity boosts (see the class docstring) of track rows
        ``tracks`` and detection rows ``dets`` of ``boxes`` ``[N, 4]`` with ``scores`` ``[N]``."""
        boost_iou, boost_mahalanobis, boost_shape = self.similarity_boosts
        pairs = tracks[:, None], dets
        age = self.frame - self.born[tracks]
        track_confidence = np.where(age < 7, 0.9 ** (7 - age), 0.9 ** self.missed[tracks])
        confidence = track_confidence[:, None] * scores[dets][None, :]
        shape = shape_similarity(self._pairs.predicted[tracks], boxes[dets])
        boost = confidence * (boost_iou * self._pairs.iou[pairs] + boost_shape * shape)
        if boost_mahalanobis > 0:
            boost = boost + boost_mahalanobis * mahalanobis_similarity(self._pairs.distance[pairs], CHI2_99[4])
        return boost

    def _boosted_scores(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``scores`` ``[N]`` of ``boxes`` ``[N, 4]`` with BoostTrack's boosts (see the class
        docstring) against the tracks' predictions of this frame."""
        scores = scores.copy()
        same_class = self.labels[:, None] == labels[None, :]  # [T, N]
        if self.boost_likely > 0:
            iou = np.where(same_class, self._pairs.iou, 0.0)
            scores = np.maximum(scores, self.boost_likely * iou.max(axis=0, initial=0.0))
        if self.boost_unlikely:
            start = max(self.new_track_threshold, self.high_threshold)
            # Tentative tracks do not count as followed, so a boosted start can go on to confirm.
            distance = self._pairs.distance
            followed = same_class & (self.state != TENTATIVE)[:, None]
            far = np.where(followed, distance, np.inf).min(axis=0, initial=np.inf) > CHI2_99[4]
            candidates = np.flatnonzero(far & (scores < start))
            overlap = box_iou(boxes[candidates], boxes[candidates]) > 0.3
            np.fill_diagonal(overlap, False)
            rival = np.where(overlap, scores[candidates][None, :], -np.inf).max(axis=1, initial=-np.inf)
            scores[candidates[scores[candidates] >= rival]] = start
        return scores

    def _apply(self, tracks: np.ndarray, dets: np.ndarray, boxes, scores, features=None) -> None:
        if len(tracks) == 0:
            return
        if self.observation_update:
            for row, det in zip(tracks, dets, strict=True):
                if self.missed[row] > 0 and self.obs_frames[row, -1] >= 0:
                    self._reupdate(row, boxes[det])
        self.mean[tracks], self.cov[tracks] = self.kalman.update(
            self.mean[tracks], self.cov[tracks], self.kalman.from_xyxy(boxes[dets])
        )
        if self._observation_centric:
            self._observe(tracks, boxes[dets])
        if features is not None:
            self._embed(tracks, features[dets], scores[dets] >= self.high_threshold)
        slot = self.hits[tracks]
        early = (self.state[tracks] == TENTATIVE) & (slot < self.min_hits - 1)
        if early.any():
            self.early[tracks[early], slot[early]] = np.column_stack([boxes[dets[early]], scores[dets[early]]])
        self.hits[tracks] += 1
        self.missed[tracks] = 0
        self.scores[tracks] = scores[dets]
        self.det_boxes[tracks] = boxes[dets]

    def _reupdate(self, row: int, box: np.ndarray) -> None:
        """OC-SORT's re-update: the filter of track ``row``, re-found by ``box`` after a gap, is
        rerun from its last observation through boxes interpolated along the gap, then predicted
        to this frame (the caller applies ``box``)."""
        gap = int(self.missed[row])
        last = self.det_boxes[row]
        mean, cov = self.obs_mean[row : row + 1], self.obs_cov[row : row + 1]
        for step in range(1, gap + 1):
            mean, cov = self.kalman.predict(mean, cov)
            virtual = last + (box - last) * step / (gap + 1)
            mean, cov = self.kalman.update(mean, cov, self.kalman.from_xyxy(virtual[None]))
        self.mean[row], self.cov[row] = (x[0] for x in self.kalman.predict(mean, cov))

    def _observe(self, tracks: np.ndarray, boxes: np.ndarray) -> None:
        previous, has_previous = self._previous_observation(tracks)
        step = box_centres(boxes) - box_centres(previous)
        norm = np.linalg.norm(step, axis=1, keepdims=True)
        moved = has_previous & (norm[:, 0] > 0)
        self.velocity[tracks[moved]] = step[moved] / norm[moved]
        self.obs_boxes[tracks] = np.concatenate([self.obs_boxes[tracks][:, 1:], boxes[:, None]], axis=1)
        self.obs_frames[tracks] = np.concatenate(
            [self.obs_frames[tracks][:, 1:], np.full((len(tracks), 1), self.frame)], axis=1
        )
        self.obs_mean[tracks], self.obs_cov[tracks] = self.mean[tracks], self.cov[tracks]

    def _embed(self, tracks: np.ndarray, features: np.ndarray, confident: np.ndarray) -> None:
        tracks, features = tracks[confident], features[confident]
        if len(tracks) == 0:
            return
        if self.embeddings.shape[1] != features.shape[1]:
            self.embeddings = np.zeros((self.num_tracks, features.shape[1]))
        old = self.embeddings[tracks]
        known = np.linalg.norm(old, axis=1, keepdims=True) > 0
        mixed = np.where(known, self.embedding_momentum * old + (1 - self.embedding_momentum) * features, features)
        self.embeddings[tracks] = mixed / np.linalg.norm(mixed, axis=1, keepdims=True).clip(1e-12)

    def _confirm(self, tracks: np.ndarray) -> None:
        if len(tracks) == 0:
            return
        new = tracks[self.ids[tracks] == 0]
        self.ids[new] = np.arange(self.next_id, self.next_id + len(new))
        self.next_id += len(new)
        self.state[tracks] = CONFIRMED
        for row in new:
            count = int(self.hits[row]) - 1  # consecutive hits before this frame's
            if count > 0:
                frames = self.frame - count + np.arange(count)
                self._earlier.append(np.column_stack([frames, np.full(count, self.ids[row]), self.early[row, :count]]))

    def _follow_camera(self, image: np.ndarray) -> None:
        """Move every track by the camera's motion since the previous frame."""
        affine = self.camera.estimate(image)
        if not self.num_tracks or np.allclose(affine, np.eye(2, 3)):
            return
        self.mean, self.cov = self.kalman.warp(self.mean, self.cov, affine)
        if self._observation_centric:
            self.obs_mean, self.obs_cov = self.kalman.warp(self.obs_mean, self.obs_cov, affine)
            self.obs_boxes = warp_boxes(self.obs_boxes.reshape(-1, 4), affine).reshape(self.obs_boxes.shape)
            self.velocity = self.velocity @ affine[:, :2].T
        self.det_boxes = warp_boxes(self.det_boxes, affine)

    # ------------------------------------------------------------------------------ update
    def update(
        self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray | None = None, image: np.ndarray | None = None
    ) -> Tracks:
        """Advance one frame with this frame's detections (may be empty); returns its tracks.

        ``boxes``: ``[N, 4]`` xyxy pixels; ``scores``: ``[N]``; ``labels``: ``[N]`` class labels
        (all 0 when None); ``image``: the frame (HWC uint8 BGR), used by camera-motion
        compensation and ReID when they are on. Detections of untracked classes or below
        ``low_threshold`` are ignored.
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
        features = self.reid(image, boxes) if self.reid is not None and image is not None and len(boxes) else None

        if self.num_tracks:
            # A track that is not being followed keeps its position but not its growth.
            self.kalman.freeze_size(self.mean, self.state != CONFIRMED)
            self.mean, self.cov = self.kalman.predict(self.mean, self.cov)
        if self.camera is not None and image is not None:
            self._follow_camera(image)
        self._pairs = FramePairs(self.kalman, self.mean, self.cov, boxes)
        # Association and track starts use the boosted scores; tracks keep the detector's.
        boosted = scores
        if (self.boost_likely > 0 or self.boost_unlikely) and len(boxes):
            boosted = self._boosted_scores(boxes, scores, labels)
        high = np.flatnonzero(boosted >= self.high_threshold)
        low = np.flatnonzero(boosted < self.high_threshold)
        rows = np.arange(self.num_tracks)
        pool = rows[(self.state == CONFIRMED) | (self.state == LOST)]
        tentative = rows[self.state == TENTATIVE]
        # 1. followed and lost tracks vs confident detections
        hit1, det1, pool_left, high_left = self._match(
            pool, high, boxes, boosted, labels, self.match_threshold, "custom", self.fuse_score, features
        )
        self._apply(hit1, det1, boxes, scores, features)
        self._confirm(hit1)
        # 2. still-followed tracks (and lost ones with low_score_recovery) vs weak detections
        followed = pool_left if self.low_score_recovery else pool_left[self.state[pool_left] == CONFIRMED]
        hit2, det2, _, _ = self._match(followed, low, boxes, boosted, labels, self.second_match_threshold, "iou", False)
        self._apply(hit2, det2, boxes, scores, features)
        self._confirm(hit2)
        hits = [hit1, hit2]
        # 2b. OC-SORT's recovery: tracks still unmatched vs confident detections, by their last observed box
        if self.observation_recovery:
            unmatched = np.setdiff1d(pool_left, hit2)
            hit_r, det_r, _, high_left = self._match(
                unmatched, high_left, boxes, boosted, labels, self.match_threshold, "observation", False
            )
            self._apply(hit_r, det_r, boxes, scores, features)
            self._confirm(hit_r)
            hits.append(hit_r)
        # 3. tentative tracks vs the confident detections left
        hit3, det3, tentative_left, high_left = self._match(
            tentative, high_left, boxes, boosted, labels, self.unconfirmed_match_threshold, "custom", self.fuse_score,
            features,
        )  # fmt: skip
        self._apply(hit3, det3, boxes, scores, features)
        self._confirm(hit3[self.hits[hit3] >= self.min_hits])
        hits.append(hit3)

        matched = np.zeros(self.num_tracks, bool)
        matched[np.concatenate(hits)] = True
        self.missed[~matched] += 1
        self.state[~matched & (self.state == CONFIRMED)] = LOST
        drop = np.zeros(self.num_tracks, bool)
        drop[tentative_left] = True
        drop |= (self.state == LOST) & (self.missed > self.max_lost_frames)
        self._keep(~drop)

        # 4. new tracks from confident detections nobody claimed
        new = high_left[boosted[high_left] >= self.new_track_threshold]
        if len(new):
            self._start(new, boxes, scores, labels, features)

        shown = np.flatnonzero((self.state == CONFIRMED) & (self.missed == 0))
        out_boxes = self.kalman.to_xyxy(self.mean[shown]) if self.output_box == "kalman" else self.det_boxes[shown]
        earlier = np.concatenate(self._earlier) if self._earlier else np.zeros((0, 7))
        self._earlier = []
        return Tracks(out_boxes, self.ids[shown].copy(), self.scores[shown].copy(), self.labels[shown].copy(), earlier)

    def _keep(self, keep: np.ndarray) -> None:
        if keep.all():
            return
        for name in self._ARRAYS:
            array = getattr(self, name)
            if len(array):
                setattr(self, name, array[keep])

    def _start(self, dets: np.ndarray, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, features) -> None:
        n = len(dets)
        mean, cov = self.kalman.initiate(self.kalman.from_xyxy(boxes[dets]))
        obs_boxes = np.zeros((n, self.delta_t, 4))
        obs_boxes[:, -1] = boxes[dets]
        obs_frames = np.full((n, self.delta_t), -1, np.int64)
        obs_frames[:, -1] = self.frame
        new = {
            "mean": mean, "cov": cov, "ids": np.zeros(n, np.int64), "state": np.full(n, TENTATIVE),
            "hits": np.ones(n, np.int64), "missed": np.zeros(n, np.int64), "born": np.full(n, self.frame),
            "scores": scores[dets], "labels": labels[dets], "det_boxes": boxes[dets], "obs_boxes": obs_boxes,
            "obs_frames": obs_frames, "obs_mean": mean, "obs_cov": cov, "velocity": np.zeros((n, 2)),
            "early": np.zeros((n, self.min_hits - 1, 5)),
        }  # fmt: skip
        if self.min_hits > 1:
            new["early"][:, 0] = np.column_stack([boxes[dets], scores[dets]])
        if self.embeddings.shape[1] or features is not None:
            width = self.embeddings.shape[1] or features.shape[1]
            rows = np.zeros((n, width))
            if features is not None:
                rows[:] = np.where((scores[dets] >= self.high_threshold)[:, None], features[dets], 0.0)
            if self.embeddings.shape != (self.num_tracks, width):  # the first embeddings: rows for the tracks held
                self.embeddings = np.zeros((self.num_tracks, width))
            new["embeddings"] = rows
        start = self.num_tracks
        for name, rows in new.items():
            setattr(self, name, np.concatenate([getattr(self, name), rows]))
        first = self.confirm_first_frame and self.frame == 1
        if first or self.min_hits <= 1:
            self._confirm(np.arange(start, start + n))


def warp_boxes(boxes: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``[N, 4]`` xyxy boxes moved by ``affine`` ``[2, 3]``: the box around the four moved corners."""
    if len(boxes) == 0:
        return boxes
    corners = boxes[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 4, 2) @ affine[:, :2].T + affine[:, 2]
    return np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)


def with_defaults(**defaults: object):
    """Class decorator: a ``ByteTracker`` subclass whose only change is other defaults. Its
    ``__init__`` takes the base's keyword arguments and shows their new defaults in its signature,
    so the registry checks configs against the full argument list (unknown keys are errors)."""

    def decorate(cls: type) -> type:
        base_init = cls.__mro__[1].__init__
        signature = inspect.signature(base_init)
        unknown = set(defaults) - set(signature.parameters)
        if unknown:
            raise TypeError(f"{cls.__name__}: {', '.join(sorted(unknown))} not arguments of {cls.__mro__[1].__name__}")

        def __init__(self, **kwargs: object) -> None:
            base_init(self, **{**defaults, **kwargs})

        params = [p.replace(default=defaults.get(name, p.default)) for name, p in signature.parameters.items()]
        __init__.__signature__ = signature.replace(parameters=params)
        __init__.__annotations__ = dict(base_init.__annotations__)
        __init__.__qualname__ = f"{cls.__qualname__}.__init__"
        cls.__init__ = __init__
        return cls

    return decorate


@TRACKERS.register()
@with_defaults(high_threshold=0.6, new_track_threshold=0.6, match_threshold=0.7, fuse_score=False, min_hits=3,
               observation_update=True, direction_weight=0.2, observation_recovery=True)  # fmt: skip
class OCSortTracker(ByteTracker):
    """``ByteTracker`` with OC-SORT's three ideas on and its published MOT17 settings (Cao et al.,
    2023): detections from 0.6 start and lead tracks, plain IoU at least 0.3 (no score fusion),
    direction consistency weight 0.2 over 3 frames, 3 hits to confirm. ByteTrack's second stage
    for weak detections stays (OC-SORT's ``use_byte`` variant). Arguments as ``ByteTracker``."""


@TRACKERS.register()
@with_defaults(high_threshold=0.6, new_track_threshold=0.7, motion="xywh", camera_motion="sparse_flow")
class BotSortTracker(ByteTracker):
    """``ByteTracker`` with BoT-SORT's motion (Aharon et al., 2022): the (x, y, w, h) Kalman state,
    camera-motion compensation by sparse optical flow when frames are given, and its published
    MOT17 thresholds (tracks led by detections from 0.6, started from 0.7, IoU fused with the
    score). Appearance only with a ``reid``. Arguments as ``ByteTracker``."""
