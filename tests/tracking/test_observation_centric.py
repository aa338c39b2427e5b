"""OC-SORT's ideas in the tracker: the re-update after a gap, the direction-consistency cost and
the recovery from the last observation, on hand-made scenes."""

import numpy as np
import pytest

from detector.tracking.kalman import KalmanFilter, xyxy_to_cxcyah
from detector.tracking.tracker import ByteTracker, OCSortTracker, direction_consistency


def box(cx, cy, w=60, h=150):
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], float)


def step(tracker, *boxes, score=0.9):
    boxes = np.array(boxes, float).reshape(-1, 4)
    return tracker.update(boxes, np.full(len(boxes), score))


def test_direction_consistency_by_hand():
    # A track that moved right (velocity (1, 0)) and was last seen centred at (0, 0).
    previous, has, velocity = box(0, 0)[None], np.array([True]), np.array([[1.0, 0.0]])
    dets = np.stack([box(10, 0), box(0, 10), box(-10, 0), box(10, 10)])
    # (pi/2 - angle) / pi: same direction 0.5, a right angle 0, opposite -0.5, 45 degrees 0.25.
    np.testing.assert_allclose(direction_consistency(previous, has, velocity, dets), [[0.5, 0, -0.5, 0.25]], atol=1e-6)
    # No earlier observation or no velocity yet: no term.
    assert not direction_consistency(previous, np.array([False]), velocity, dets).any()
    assert not direction_consistency(previous, has, np.zeros((1, 2)), dets).any()


def test_the_direction_term_prefers_the_detection_ahead():
    # A track walks right at 6 px/frame. Two detections overlap its prediction equally (shifted
    # 8 px right, or 20 px down: the same IoU for a 60 x 150 box), the second listed first.
    ahead_and_below = []
    for weight in (0.0, 0.2):
        tracker = ByteTracker(direction_weight=weight, output_box="detection", min_hits=1)
        for t in range(6):
            step(tracker, box(100 + 6 * t, 300))
        predicted = 100 + 6 * 6
        tracks = step(tracker, box(predicted, 320), box(predicted + 8, 300))
        ahead_and_below.append(tuple(np.round(tracks.boxes[tracks.ids == 1][0], 3)))
    assert ahead_and_below[0] == tuple(box(predicted, 320))  # a tie: the order decides
    assert ahead_and_below[1] == tuple(box(predicted + 8, 300))  # the direction breaks it


def test_the_re_update_reruns_the_filter_through_the_gap():
    # Right at 6 px/frame for 10 frames, hidden 4 frames, found 10 px right and 30 px down of
    # where it was last seen... per frame of the gap: the filter goes through the interpolation.
    tracker = ByteTracker(observation_update=True, direction_weight=0.2)
    for t in range(10):
        step(tracker, box(100 + 6 * t, 200))
    kf = KalmanFilter()
    last_mean, last_cov = tracker.mean.copy(), tracker.cov.copy()  # right after the last observation
    for _ in range(4):
        step(tracker)
    found = box(154 + 50, 200 + 30)
    tracks = step(tracker, found)
    assert tracks.ids.tolist() == [1]
    mean, cov = last_mean, last_cov
    for k in range(1, 5):
        mean, cov = kf.predict(mean, cov)
        mean, cov = kf.update(mean, cov, xyxy_to_cxcyah(box(154, 200) + (found - box(154, 200)) * k / 5))
    mean, cov = kf.update(*kf.predict(mean, cov), xyxy_to_cxcyah(found))
    np.testing.assert_allclose(tracker.mean, mean, rtol=1e-9)
    np.testing.assert_allclose(tracker.cov, cov, rtol=1e-9)
    # The observed direction over the gap becomes the track's direction: (50, 30) normalised.
    np.testing.assert_allclose(tracker.velocity[0], np.array([50, 30]) / np.hypot(50, 30))
    # Without the re-update the filter just updates its coasted prediction: another state.
    plain = ByteTracker()
    for t in range(10):
        step(plain, box(100 + 6 * t, 200))
    for _ in range(4):
        step(plain)
    step(plain, found)
    assert not np.allclose(plain.mean, mean)


def test_recovery_from_the_last_observation():
    # Walking right at 12 px/frame, the person stops dead behind an obstacle for 6 frames and
    # reappears where they were last seen. The coasted prediction has run 84 px ahead (no
    # overlap), so only the last observation finds them.
    frames = [[box(100 + 12 * t, 200, 40, 100)] for t in range(8)] + [[]] * 6 + [[box(184, 200, 40, 100)]] * 4
    for recovery, expected in ((False, 2), (True, 1)):
        tracker = ByteTracker(observation_recovery=recovery, min_hits=1)
        ids = [step(tracker, *f).ids.tolist() for f in frames]
        assert ids[-1] == [expected]


@pytest.mark.parametrize("gap", [1, 5])
def test_oc_sort_keeps_a_person_through_a_gap(gap):
    tracker = OCSortTracker()
    frames = [[box(100 + 5 * t, 200)] for t in range(10)] + [[]] * gap + [[box(100 + 5 * (10 + gap + t), 200)]
                                                                            for t in range(5)]  # fmt: skip
    ids = [step(tracker, *f).ids.tolist() for f in frames]
    assert ids[-1] == [1] and tracker.next_id == 2
