"""BoostTrack's detection-confidence and similarity boosts and the recovery of lost tracks by
weak detections, on hand-made scenes (BoT-SORT's thresholds: detections lead from 0.6, start
tracks from 0.7)."""

import numpy as np
import pytest

from detector.errors import ConfigError
from detector.tracking.tracker import BotSortTracker


def box(cx, cy, w=60, h=150):
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], float)


def step(tracker, boxes=(), scores=()):
    return tracker.update(np.array(boxes, float).reshape(-1, 4), np.array(scores, float))


def walk_then_hide(tracker, frames=6, hidden=1):
    """A person standing at (300, 300), seen confidently for ``frames`` frames, then missed."""
    for _ in range(frames):
        step(tracker, [box(300, 300)], [0.9])
    for _ in range(hidden):
        assert len(step(tracker)) == 0


def test_weak_detections_re_find_lost_tracks_only_with_low_score_recovery():
    for recovery in (False, True):
        tracker = BotSortTracker(low_score_recovery=recovery)
        walk_then_hide(tracker)
        tracks = step(tracker, [box(302, 300)], [0.3])  # back, half hidden: a weak detection
        assert tracks.ids.tolist() == ([1] if recovery else [])
        # Recovered, it is followed again: the next weak detection keeps it even without recovery.
        assert step(tracker, [box(304, 300)], [0.3]).ids.tolist() == ([1] if recovery else [])
    # A followed (not lost) track takes weak detections in both cases (ByteTrack's stage 2).
    tracker = BotSortTracker()
    walk_then_hide(tracker, hidden=0)
    assert step(tracker, [box(302, 300)], [0.3]).ids.tolist() == [1]


def test_the_likely_boost_lets_a_weak_detection_on_a_prediction_lead():
    # 0.45 is below the 0.6 that stage 1 (the only stage for lost tracks) asks for; 0.65 times the
    # IoU with the prediction (nearly 1, the person stands still) lifts it over.
    for boost, expected in ((0.0, []), (0.65, [1])):
        tracker = BotSortTracker(boost_likely=boost)
        walk_then_hide(tracker)
        tracks = step(tracker, [box(300, 300)], [0.45])
        assert tracks.ids.tolist() == expected
    assert tracks.scores.tolist() == [0.45]  # the track reports the detector's score
    # A detection that overlaps the prediction less gains less: IoU 0.6 -> 0.39, still weak.
    tracker = BotSortTracker(boost_likely=0.65)
    walk_then_hide(tracker)
    assert len(step(tracker, [box(300 + 15, 300)], [0.45])) == 0


def test_the_unlikely_boost_starts_tracks_for_weak_detections_nobody_follows():
    far, near = box(100, 300), box(300, 300)
    for boost in (False, True):
        tracker = BotSortTracker(boost_unlikely=boost)
        step(tracker, [box(300, 300)], [0.9])  # one person followed from the first frame
        for _ in range(3):  # a weak detection far from it, and another on it
            tracks = step(tracker, [box(300, 300), far, near + [4, 0, 4, 0]], [0.9, 0.4, 0.4])
        assert sorted(tracks.ids.tolist()) == ([1, 2] if boost else [1])
    # The weak detection on the followed person was not boosted: it did not start a track.
    assert tracker.num_tracks == 2
    # Of two overlapping weak candidates only the stronger is boosted.
    tracker = BotSortTracker(boost_unlikely=True, min_hits=1)
    step(tracker, [box(500, 300)], [0.9])
    tracks = step(tracker, [box(500, 300), far, far + [10, 0, 10, 0]], [0.9, 0.35, 0.4])
    assert sorted(tracks.ids.tolist()) == [1, 2]
    np.testing.assert_allclose(tracks.boxes[tracks.ids == 2][0], far + [10, 0, 10, 0])


def test_boosts_leave_other_classes_alone():
    tracker = BotSortTracker(boost_likely=0.65, classes=None)
    walk_then_hide(tracker)
    tracks = tracker.update(box(300, 300)[None], np.array([0.45]), np.array([3]))
    assert len(tracks) == 0


def test_boost_settings_are_checked():
    with pytest.raises(ConfigError, match="boost_likely"):
        BotSortTracker(boost_likely=1.5)
    with pytest.raises(ConfigError, match=r"tracker.boost_shape: -0.25; expected a number in \[0, 1\]"):
        BotSortTracker(boost_shape=-0.25)


def test_similarity_boosts_trust_a_long_followed_track_over_a_new_one():
    """A detection between two people, nearer the one seen for two frames than the one seen for
    nine: by IoU alone it goes to the new track, with the similarity boosts to the old one (the
    new track's confidence is 0.9 ** 5)."""
    old, new, between = box(30, 20, 20, 40), box(10, 20, 20, 40), box(19, 20, 20, 40)
    for boosts, expected in (((0, 0, 0), 2), ((0.5, 0.25, 0.25), 1), ((0.5, 0, 0), 2), ((0, 0, 0.25), 1)):
        tracker = BotSortTracker(boost_iou=boosts[0], boost_mahalanobis=boosts[1], boost_shape=boosts[2])
        for frame in range(1, 10):
            tracks = step(tracker, [old, new][: 1 + (frame >= 8)], [0.9] * (1 + (frame >= 8)))
        assert tracks.ids.tolist() == [1, 2]
        assert step(tracker, [between], [0.9]).ids.tolist() == [expected], boosts


def test_the_unlikely_boost_starts_tracks_when_nobody_is_followed():
    tracker = BotSortTracker(boost_unlikely=True)
    for _ in range(2):
        tracks = step(tracker, [box(100, 300)], [0.4])
    assert tracks.ids.tolist() == [1]
    assert len(step(BotSortTracker(), [box(100, 300)], [0.4])) == 0


def test_both_boosts_run_on_frames_without_tracks_or_detections():
    tracker = BotSortTracker(boost_likely=0.65, boost_unlikely=True, low_score_recovery=True)
    assert step(tracker, [box(100, 300)], [0.4]).ids.tolist() == [1]  # the first frame confirms at once
    assert len(step(tracker)) == 0
    assert step(tracker, [box(100, 300)], [0.2]).ids.tolist() == [1]
