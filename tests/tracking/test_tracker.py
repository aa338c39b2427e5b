"""The trackers on synthetic scenes: ids survive crossings and occlusions, weak detections keep
tracks alive, the life cycle follows its settings. Scenes every tracker must pass run for each
registered one and for BoT-SORT with the height-modulated IoU or the similarity boosts."""

import functools

import numpy as np
import pytest

from detector.errors import ConfigError
from detector.registry import TRACKERS
from detector.tracking.geometry import box_iou
from detector.tracking.kalman import KalmanFilterXYWH
from detector.tracking.postprocess import interpolate_gaps
from detector.tracking.tracker import BotSortTracker, ByteTracker, FramePairs, OCSortTracker

# The registered trackers, and BoT-SORT with Hybrid-SORT's cost or BoostTrack's similarity boosts.
ALL_TRACKERS = pytest.mark.parametrize(
    "tracker_type",
    [ByteTracker, OCSortTracker, BotSortTracker, functools.partial(BotSortTracker, cost="hmiou"),
     functools.partial(BotSortTracker, boost_iou=0.5, boost_mahalanobis=0.25, boost_shape=0.25)],
    ids=["ByteTracker", "OCSortTracker", "BotSortTracker", "hmiou", "similarity_boosts"],
)  # fmt: skip


def box(cx, cy, w, h):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def run(tracker, frames):
    """frames: lists of (box, score, label); returns per frame {id: box}."""
    out = []
    for dets in frames:
        boxes = np.array([d[0] for d in dets], float).reshape(-1, 4)
        scores = np.array([d[1] for d in dets], float)
        labels = np.array([d[2] if len(d) > 2 else 0 for d in dets], np.int64)
        tracks = tracker.update(boxes, scores, labels)
        out.append({int(i): b for i, b in zip(tracks.ids, tracks.boxes, strict=True)})
    return out


def test_every_tracker_is_registered():
    assert {"ByteTracker", "OCSortTracker", "BotSortTracker"} <= set(TRACKERS.names())


@ALL_TRACKERS
def test_crossing_pedestrians_keep_their_ids_through_a_ten_frame_occlusion(tracker_type):
    # A walks right, B walks left, B nearer the camera (larger, lower). While they cross, A is
    # hidden behind B for 10 frames (no detection of A at all).
    frames = []
    for t in range(60):
        a = box(60 + 6 * t, 200, 40, 100)
        b = box(420 - 6 * t, 215, 50, 125)
        hidden = 25 <= t < 35
        frames.append(([] if hidden else [(a, 0.9)]) + [(b, 0.85)])
    seen = run(tracker_type(), frames)
    assert set(seen[0]) == {1, 2}
    a_id = min(seen[0], key=lambda i: seen[0][i][0])  # the left one is A
    b_id = 3 - a_id
    for t in range(60):
        cx_b = (seen[t][b_id][0] + seen[t][b_id][2]) / 2
        assert abs(cx_b - (420 - 6 * t)) < 8, f"frame {t}: B's id left B"
        if 25 <= t < 35:
            assert a_id not in seen[t]  # lost tracks are not shown
        else:
            cx_a = (seen[t][a_id][0] + seen[t][a_id][2]) / 2
            assert abs(cx_a - (60 + 6 * t)) < 8, f"frame {t}: A's id is not on A"
    assert all(set(s) <= {1, 2} for s in seen), "no new id was created"


@ALL_TRACKERS
def test_low_score_detections_keep_a_followed_track(tracker_type):
    frames = [[(box(100 + 5 * t, 200, 40, 100), 0.3 if 10 <= t < 15 else 0.9)] for t in range(25)]
    byte = run(tracker_type(), frames)
    assert all(list(s) == [1] for s in byte), "the second association follows the weak detections"
    # Without the second stage (only detections >= 0.5 are used) the track is lost while weak.
    single = run(tracker_type(low_threshold=0.5), frames)
    assert all(single[t] == {} for t in range(10, 15)) and list(single[15]) == [1]


@ALL_TRACKERS
def test_weak_detections_neither_start_nor_revive_tracks(tracker_type):
    frames = [[(box(100, 100, 30, 80), 0.4)] for _ in range(5)]
    assert all(s == {} for s in run(tracker_type(), frames))
    frames = [[(box(100, 100, 30, 80), 0.9)]] * 3 + [[]] * 3 + [[(box(100, 100, 30, 80), 0.4)]] * 3
    seen = run(tracker_type(), frames)
    assert [list(s) for s in seen] == [[1]] * 3 + [[]] * 6


def test_life_cycle_min_hits_and_max_age_in_frames_at_the_frame_rate():
    tracker = ByteTracker(min_hits=3, max_age=30, frame_rate=15)  # 15 frames lost at 15 fps
    assert tracker.max_lost_frames == 15
    still = (box(200, 200, 40, 100), 0.9)
    seen = run(tracker, [[]] + [[still]] * 4)  # starts empty, so no first-frame confirmation
    assert [list(s) for s in seen] == [[], [], [], [1], [1]]  # tentative for two hits
    seen = run(tracker, [[]] * 15 + [[still]])
    assert list(seen[-1]) == [1] and tracker.num_tracks == 1  # found again after 15 frames lost
    run(tracker, [[]] * 16)
    assert tracker.num_tracks == 0
    assert list(run(tracker, [[still]] * 3)[-1]) == [2]  # a new person gets the next id


@ALL_TRACKERS
def test_a_single_false_detection_never_gets_an_id(tracker_type):
    frames = [[(box(100, 100, 40, 100), 0.9)]] * 3
    frames[1] = frames[1] + [(box(400, 300, 40, 100), 0.95)]
    seen = run(tracker_type(), frames)
    assert [sorted(s) for s in seen] == [[1], [1], [1]]
    assert run(tracker_type(), [[], [], []]) == [{}, {}, {}]


def test_classes_never_mix_and_untracked_classes_are_ignored():
    person, car = (box(100, 100, 40, 100), 0.9, 0), (box(102, 100, 40, 100), 0.9, 2)
    seen = run(ByteTracker(classes=None), [[person, car]] * 5)
    assert all(len(s) == 2 for s in seen)
    tracker = ByteTracker(classes=None)
    out = [tracker.update(np.array([person[0], car[0]]), np.array([0.9, 0.9]), np.array([0, 2])) for _ in range(3)]
    assert {int(i): int(c) for i, c in zip(out[-1].ids, out[-1].labels, strict=True)} == {1: 0, 2: 2}
    assert all(list(s) == [1] for s in run(ByteTracker(), [[person, car]] * 5))  # persons only


@ALL_TRACKERS
def test_tracks_follow_moving_boxes_closely(tracker_type):
    frames = [[(box(50 + 8 * t, 100 + 3 * t, 40, 100), 0.9)] for t in range(40)]
    seen = run(tracker_type(), frames)
    np.testing.assert_allclose(seen[-1][1], box(50 + 8 * 39, 100 + 3 * 39, 40, 100), atol=1.0)
    seen = run(tracker_type(output_box="detection"), frames)
    np.testing.assert_allclose(seen[-1][1], box(50 + 8 * 39, 100 + 3 * 39, 40, 100), atol=1e-9)


def test_bad_settings_and_inputs():
    with pytest.raises(ConfigError, match=r"low_threshold <= high_threshold"):
        ByteTracker(low_threshold=0.7, high_threshold=0.5)
    with pytest.raises(ConfigError, match=r"tracker.cost: expected one of iou, giou, centre, hmiou, got 'l2'"):
        ByteTracker(cost="l2")
    with pytest.raises(ValueError, match="2 boxes, 1 scores"):
        ByteTracker().update(np.zeros((2, 4)), np.zeros(1))
    assert TRACKERS.build({"type": "ByteTracker", "max_age": 10}, "tracker").max_lost_frames == 10
    with pytest.raises(ConfigError, match=r"tracker.motion: expected one of xyah, xywh, got 'xyz'"):
        ByteTracker(motion="xyz")
    with pytest.raises(ConfigError, match=r"tracker.camera_motion: expected one of sparse_flow, ecc or null"):
        BotSortTracker(camera_motion="orb")
    with pytest.raises(ConfigError, match=r"tracker.appearance_weight: 1.5; expected a number in \[0, 1\]"):
        ByteTracker(appearance_weight=1.5)


def test_unknown_or_mistyped_tracker_settings_name_the_key():
    # The OC-SORT and BoT-SORT variants only change defaults, yet check keys like ByteTracker.
    with pytest.raises(ConfigError, match=r"track.tracker.direction_wieght: OCSortTracker has no argument "
                       r"'direction_wieght'; did you mean 'direction_weight'\?"):  # fmt: skip
        TRACKERS.build({"type": "OCSortTracker", "direction_wieght": 0.3}, "track.tracker")
    with pytest.raises(ConfigError, match=r"track.tracker.camera_motion: 3; expected a string or null"):
        TRACKERS.check({"type": "BotSortTracker", "camera_motion": 3}, "track.tracker")
    with pytest.raises(ConfigError, match=r"track.tracker.type: .*'BoTSORT'"):
        TRACKERS.check({"type": "BoTSORT"}, "track.tracker")
    tracker = TRACKERS.build({"type": "OCSortTracker", "min_hits": 2}, "track.tracker")
    assert (tracker.min_hits, tracker.direction_weight, tracker.match_threshold) == (2, 0.2, 0.7)
    bot = TRACKERS.build({"type": "BotSortTracker"}, "track.tracker")
    assert type(bot.kalman).__name__ == "KalmanFilterXYWH" and bot.camera.method == "sparse_flow"


def test_interpolate_gaps_by_hand():
    rows = np.array(
        [
            [1, 1, 0, 0, 10, 20, 0.9],
            [4, 1, 30, 0, 10, 20, 0.6],  # lost in frames 2 and 3
            [1, 2, 100, 100, 10, 10, 0.8],
            [30, 2, 100, 100, 10, 10, 0.8],  # a gap of 29 frames: too long for max_gap 20
        ]
    )
    out = interpolate_gaps(rows, max_gap=20)
    assert out.shape == (6, 7)
    np.testing.assert_allclose(out[(out[:, 1] == 1) & np.isin(out[:, 0], [2, 3])][:, 2], [10, 20])
    np.testing.assert_allclose(out[(out[:, 1] == 1) & (out[:, 0] == 2)][0], [2, 1, 10, 0, 10, 20, 0.6])
    assert out[:, 0].tolist() == sorted(out[:, 0].tolist())
    np.testing.assert_array_equal(interpolate_gaps(rows, max_gap=0), rows[np.lexsort((rows[:, 1], rows[:, 0]))])
    assert interpolate_gaps(np.zeros((0, 7))).shape == (0, 7)


@pytest.mark.parametrize("min_hits", [1, 2, 3])
def test_a_confirmed_track_reports_its_detections_from_before_confirmation(min_hits):
    tracker = ByteTracker(min_hits=min_hits)
    walking = [box(100 + 5 * f, 200, 40, 100) for f in range(5)]
    tracker.update(np.zeros((0, 4)), np.zeros(0))  # frame 1 empty: no first-frame confirmation
    earlier = []
    for f, b in enumerate(walking):
        tracks = tracker.update(np.array([b]), np.array([0.8 + 0.01 * f]))
        earlier.append(tracks.earlier)
        if f == min_hits - 1:
            assert list(tracks.ids) == [1]
    confirming = earlier[min_hits - 1]
    # frames 2.. (the track's first frames), id 1, the detections' boxes and scores
    expected = [[2 + f, 1, *walking[f], 0.8 + 0.01 * f] for f in range(min_hits - 1)]
    np.testing.assert_allclose(confirming.reshape(-1, 7), np.array(expected).reshape(-1, 7))
    assert all(len(e) == 0 for i, e in enumerate(earlier) if i != min_hits - 1)


def test_tracks_confirmed_on_the_first_frame_or_dropped_report_nothing_earlier():
    tracker = ByteTracker(min_hits=3)
    first = tracker.update(np.array([box(100, 200, 40, 100)]), np.array([0.9]))
    assert list(first.ids) == [1] and first.earlier.shape == (0, 7)
    blink = [box(400, 300, 40, 100)]
    for frames in ([blink, blink, []], [blink]):  # a tentative track that misses is dropped
        for dets in frames:
            out = tracker.update(np.array(dets).reshape(-1, 4), np.full(len(dets), 0.9))
            assert out.earlier.shape == (0, 7)


def test_the_default_tracker_keeps_a_lost_person_60_frames_botsort_30():
    from detector import load_config
    from detector.commands.track import DEFAULT_TRACKER
    from detector.config_sections import parse_config

    def tracker_of(config):
        return TRACKERS.build(parse_config(load_config(config)).track.tracker, "track.tracker")

    default, botsort = tracker_of(DEFAULT_TRACKER), tracker_of("_base_/trackers/botsort")
    assert DEFAULT_TRACKER == "_base_/trackers/default" and type(default) is BotSortTracker
    assert (default.max_lost_frames, botsort.max_lost_frames) == (60, 30)
    # Same association otherwise: a person standing still, hidden for 45 frames, comes back.
    still = [(box(300, 200, 40, 100), 0.9)]
    for tracker, same_id in ((default, True), (botsort, False)):
        seen = run(tracker, [still] * 3 + [[]] * 45 + [still] * 3)
        assert list(seen[2]) == [1] and (list(seen[-1]) == [1]) == same_id, seen[-1]


@pytest.mark.parametrize("cost", ["iou", "hmiou"])
def test_height_modulated_iou_gives_a_box_to_the_person_of_its_height(cost):
    """A tall person (id 1) and a short one (id 2) standing where the tall one's lower half is:
    a short box between them overlaps the tall one more (IoU 0.5 against 0.43) but the short one
    over its whole height (height IoU 1 against 0.5)."""
    tall, short = [10, 0, 30, 80], [18, 40, 38, 80]
    seen = run(BotSortTracker(cost=cost), [[(tall, 0.9), (short, 0.9)]] * 5 + [[([10, 40, 30, 80], 0.9)]])
    assert sorted(seen[-2]) == [1, 2]
    assert list(seen[-1]) == [1 if cost == "iou" else 2]


@pytest.mark.parametrize("cost", ["iou", "hmiou"])
def test_height_modulated_iou_is_a_stricter_gate(cost):
    """The lower 3/8 of a tracked person's box: IoU 0.375 times the score 0.9 passes the 0.2 a
    match needs; the height-modulated IoU, 0.375 squared times 0.9, does not (the track is lost,
    and the box starts a tentative one)."""
    tracker = BotSortTracker(cost=cost)
    seen = run(tracker, [[([10, 0, 30, 80], 0.9)]] * 5 + [[([10, 50, 30, 80], 0.9)]])
    assert list(seen[-1]) == ([1] if cost == "iou" else [])
    assert tracker.num_tracks == (1 if cost == "iou" else 2)


def test_frame_pairs_read_the_predicted_state_after_tracks_are_updated():
    kalman = KalmanFilterXYWH()
    mean, cov = kalman.initiate(kalman.from_xyxy(np.array([box(100, 200, 40, 100), box(300, 200, 40, 100)])))
    detections = np.array([box(104, 200, 40, 100), box(300, 230, 40, 100)])
    pairs = FramePairs(kalman, mean, cov, detections)
    iou = box_iou(kalman.to_xyxy(mean), detections)
    distance = kalman.gating_distance(mean, cov, kalman.from_xyxy(detections))
    # Track 0 matched in an earlier stage and was updated in place before the pairs were read.
    mean[0], cov[0] = mean[0] + 50.0, cov[0] * 4.0
    np.testing.assert_array_equal(pairs.iou, iou)
    np.testing.assert_array_equal(pairs.distance, distance)
    assert pairs.iou[0, 0] == pytest.approx(36 * 100 / (2 * 4000 - 3600)) and pairs.iou[0, 1] == 0.0


@pytest.mark.parametrize("gate", [False, True])
def test_the_mahalanobis_gate_refuses_a_box_of_another_shape(gate):
    # The box doubles in width where the person stood: IoU 0.5 lets it match, but its aspect
    # (0.8 for 0.4, noise 0.1) lies beyond the chi-square 95 % gate.
    frames = [[(box(100, 200, 40, 100), 0.9)]] * 5 + [[(box(100, 200, 80, 100), 0.9)]]
    out = run(ByteTracker(gate=gate), frames)
    assert list(out[4]) == [1] and list(out[5]) == ([] if gate else [1])
