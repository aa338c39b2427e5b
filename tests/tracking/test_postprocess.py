"""Offline clean-up of finished tracks: joining tracks that continue one another
(``link_tracklets``) and extending tracks at their ends (``extend_tracks``) on hand-made
trajectories, and both through ``detector track``'s pipeline."""

import numpy as np
import pytest
from conftest import write_sequence

from detector.config import load_config
from detector.config_sections import parse_config
from detector.errors import ConfigError
from detector.tracking.pipeline import detections_from_file, track_sequence
from detector.tracking.postprocess import extend_tracks, interpolate_gaps, link_tracklets
from detector.tracking.sources import FrameSource
from detector.tracking.tracker import ByteTracker


def walk(track_id, frames, x0, vx, y=100.0, w=40.0, h=100.0):
    """MOT rows of a box of w x h px moving vx px/frame from x0 at frame 0."""
    return [[f, track_id, x0 + vx * f, y, w, h, 0.9] for f in frames]


def ids_by_frame(rows, frame):
    return sorted(rows[rows[:, 0] == frame][:, 1].astype(int).tolist())


def test_a_split_trajectory_is_joined_and_a_chain_keeps_its_first_id():
    # One person walking right in three pieces (lost for frames 21-30 and 46-60), and one walking
    # left through the same place.
    rows = np.array(
        walk(5, range(1, 21), 100, 2) + walk(2, range(31, 46), 100, 2) + walk(9, range(61, 80), 100, 2)
        + walk(3, range(1, 80), 400, -2)
    )  # fmt: skip
    out = link_tracklets(rows, max_gap=20, min_iou=0.5)
    assert sorted(set(out[:, 1].astype(int).tolist())) == [3, 5]
    assert ids_by_frame(out, 35) == [3, 5] and ids_by_frame(out, 70) == [3, 5]
    np.testing.assert_array_equal(out[:, [0, 2, 3, 4, 5, 6]], rows[:, [0, 2, 3, 4, 5, 6]])  # only ids change
    # A gap longer than max_gap stays split; 0 turns joining off.
    assert sorted(set(link_tracklets(rows, max_gap=10)[:, 1].astype(int).tolist())) == [2, 3, 5, 9]
    np.testing.assert_array_equal(link_tracklets(rows, max_gap=0), rows)
    assert link_tracklets(np.zeros((0, 7))).shape == (0, 7)


def test_tracks_moving_apart_or_overlapping_in_time_are_not_joined():
    # A ends at frame 20 near x = 140 going right; B starts at frame 31 near x = 100 going left:
    # at the middle of the gap A would be at 151, B at 111, 40 px wide boxes: IoU 0.
    apart = np.array(walk(1, range(1, 21), 100, 2) + walk(2, range(31, 50), 162, -2))
    assert sorted(set(link_tracklets(apart, max_gap=20)[:, 1].astype(int).tolist())) == [1, 2]
    # Same place and speed, but B starts before A ends: two people, never one.
    overlap = np.array(walk(1, range(1, 21), 100, 2) + walk(2, range(20, 40), 100, 2))
    assert sorted(set(link_tracklets(overlap, max_gap=20)[:, 1].astype(int).tolist())) == [1, 2]


def test_of_two_continuations_the_better_one_wins():
    # A ends at frame 20 (x = 140, 2 px/frame). B continues it exactly; C starts 12 px off (at
    # the gap's middle, IoU of 40 px boxes 28/52 = 0.54 > 0.5): both qualify, B matches better.
    rows = np.array(walk(1, range(1, 21), 100, 2) + walk(2, range(31, 50), 100, 2) + walk(3, range(31, 50), 112, 2))
    out = link_tracklets(rows, max_gap=20, min_iou=0.5)
    assert ids_by_frame(out, 40) == [1, 3]
    assert out[(out[:, 0] == 40) & (out[:, 1] == 1)][0, 2] == 180  # B's box under A's id


def test_detector_track_joins_tracks_across_gaps_longer_than_its_memory(tmp_path):
    # A person walking right, unseen for frames 11-50: the tracker (lost tracks kept 30 frames)
    # starts a new id; joining 60-frame gaps gives the results file one id.
    seq, dets = write_sequence(tmp_path, {f: 0.9 for f in [*range(1, 11), *range(51, 61)]}, 60)
    runs = {
        gap: track_sequence(
            FrameSource(seq),
            detections_from_file(dets),
            ByteTracker(max_age=30, min_hits=1),
            tmp_path / f"out{gap}",
            link_max_gap=gap,
            progress=False,
        )  # fmt: skip
        for gap in (0, 60)
    }
    assert len(set(runs[0].online_rows[:, 1].tolist())) == 2 and len(set(runs[0].rows[:, 1].tolist())) == 2
    assert set(runs[60].rows[:, 1].tolist()) == {1}
    assert len(runs[60].rows) == 20  # a 40-frame gap is longer than interpolation fills (20)


def test_link_settings_are_checked():
    with pytest.raises(ConfigError, match=r"track\.link_min_iou: 0\.0; expected a number in \(0, 1\]$"):
        parse_config(load_config("_base_/trackers/default", ["track.link_min_iou=0"]))
    with pytest.raises(ConfigError, match=r"track\.link_max_gap: -1; expected a number >= 0$"):
        parse_config(load_config("_base_/trackers/default", ["track.link_max_gap=-1"]))
    with pytest.raises(ConfigError, match=r"track\.link_gap: unknown key; did you mean 'track\.link_max_gap'\?$"):
        load_config("_base_/trackers/default", ["track.link_gap=5"])


def dets(frames, x0, vx, score, label=0, y=100.0, w=40.0, h=100.0):
    """Detection rows (frame, label, x, y, w, h, score) of the box ``walk`` moves."""
    return [[f, label, x0 + vx * f, y, w, h, score] for f in frames]


def test_a_track_is_extended_backwards_over_weak_detections_and_stops_after_max_miss():
    # The tracker followed a person (2 px/frame) from frame 20; before that the detector saw them
    # weakly in frames 12-19 except 16 and 17, and in frames 5-8 (a 3-frame hole at 9-11).
    track = np.array(walk(1, range(20, 31), 100, 2))
    weak = np.array(dets([5, 6, 7, 8, 12, 13, 14, 15, 18, 19], 100, 2, 0.3) + dets(range(20, 31), 100, 2, 0.9))
    out = extend_tracks(track, weak, max_miss=2)
    assert out[:, 0].tolist() == [12, 13, 14, 15, *range(18, 31)]  # 16-17 skipped; 9-11 is 3 > 2 misses
    assert set(out[:, 1].tolist()) == {1}
    np.testing.assert_allclose(out[out[:, 0] == 12][0, 2:], [124, 100, 40, 100, 0.3])  # the detection's box, score
    assert extend_tracks(track, weak, max_miss=3)[:, 0].min() == 5
    assert extend_tracks(track, weak, max_miss=1)[:, 0].min() == 18
    # Through a hole the box moves at the track's velocity: at 10 px/frame, a box left at frame
    # 19's detection would be 30 px off frame 16's (IoU of 40 px boxes 1/7).
    fast = np.array(walk(1, range(20, 31), 100, 10))
    assert extend_tracks(fast, np.array(dets([16, 19], 100, 10, 0.3)), max_miss=2)[:, 0].min() == 16
    # Forwards too: detections after the track's end continue it.
    after = np.array(dets(range(31, 36), 100, 2, 0.2))
    assert extend_tracks(track, after, max_miss=0)[:, 0].max() == 35
    np.testing.assert_array_equal(extend_tracks(track, weak, max_miss=-1), track)


def test_extension_takes_only_free_matching_detections_of_the_tracks_class():
    track = np.array(walk(1, range(20, 31), 100, 2))
    # At 0.05 (under min_score), of another class, or 30 px off the track's motion (IoU of 40 px
    # boxes 10/70 < 0.5): none continues the track.
    for other in (dets(range(15, 20), 100, 2, 0.05), dets(range(15, 20), 100, 2, 0.3, label=1),
                  dets(range(15, 20), 130, 2, 0.3)):  # fmt: skip
        out = extend_tracks(track, np.array(other), max_miss=0, track_labels={1: 0})
        assert out[:, 0].min() == 20
    assert extend_tracks(track, np.array(dets([19], 100, 2, 0.3, label=1)), max_miss=0)[:, 0].min() == 19
    # A detection another track already shows is not taken again: track 2 shows frame 19's box.
    other_track = np.array(walk(2, [19], 100, 2))
    out = extend_tracks(np.concatenate([track, other_track]), np.array(dets([18, 19], 100, 2, 0.3)), max_miss=2)
    assert out[out[:, 1] == 1][:, 0].min() == 18 and len(out[out[:, 0] == 19]) == 1
    # Two tracks wanting the same detection: the first in id order gets it.
    twin = np.array(walk(3, range(20, 31), 101, 2))
    out = extend_tracks(np.concatenate([track, twin]), np.array(dets([19], 100, 2, 0.3)), max_miss=0)
    assert out[out[:, 0] == 19][:, 1].tolist() == [1]
    assert extend_tracks(np.zeros((0, 7)), np.array(dets([19], 100, 2, 0.3))).shape == (0, 7)


def test_weak_tracks_are_not_extended_when_min_track_score_says_so():
    # Track 1 (rows at 0.9) and track 2 (a static clutter-like track, rows at 0.5 and 0.6: mean
    # 0.55), each with weak detections continuing it backwards over frames 15-19.
    strong = np.array(walk(1, range(20, 31), 100, 2))
    weak_track = np.array([[f, 2, 400, 100, 40, 100, 0.5 if f % 2 else 0.6] for f in range(20, 30)])
    detections = np.array(dets(range(15, 20), 100, 2, 0.3) + dets(range(15, 20), 400, 0, 0.3))
    rows = np.concatenate([strong, weak_track])
    starts = {
        threshold: {i: out[out[:, 1] == i][:, 0].min() for i in (1, 2)}
        for threshold in (0.0, 0.55, 0.56, 0.9, 0.91)
        for out in [extend_tracks(rows, detections, max_miss=0, min_track_score=threshold)]
    }
    assert starts == {0.0: {1: 15, 2: 15}, 0.55: {1: 15, 2: 15}, 0.56: {1: 15, 2: 20}, 0.9: {1: 15, 2: 20},
                      0.91: {1: 20, 2: 20}}  # fmt: skip


def test_only_tracks_covering_min_coverage_of_their_span_are_interpolated():
    # Track 1 is seen in frames 1-10 except 4-5 (8 of 10 frames); track 2, a stray box re-found
    # now and then, in frames 1, 5 and 9 (3 of 9 frames: coverage 1/3).
    dense = np.array(walk(1, [1, 2, 3, 6, 7, 8, 9, 10], 100, 2))
    sparse = np.array(walk(2, [1, 5, 9], 300, 0))
    rows = np.concatenate([dense, sparse])
    frames = {
        cover: {i: out[out[:, 1] == i][:, 0].tolist() for i in (1, 2)}
        for cover in (0.0, 1 / 3, 0.34, 0.8, 0.81)
        for out in [interpolate_gaps(rows, max_gap=20, min_coverage=cover)]
    }
    assert frames[0.0] == frames[1 / 3] == {1: list(range(1, 11)), 2: list(range(1, 10))}
    assert frames[0.34] == frames[0.8] == {1: list(range(1, 11)), 2: [1, 5, 9]}
    assert frames[0.81] == {1: [1, 2, 3, 6, 7, 8, 9, 10], 2: [1, 5, 9]}


def test_only_tracks_whose_mean_score_reaches_min_track_score_are_interpolated():
    # Both tracks are lost in frames 4-5. Track 1's rows score 0.9; track 2's (a clutter-like
    # track) 0.5 and 0.7 in turn: mean 0.6 over its 8 rows.
    strong = np.array(walk(1, [1, 2, 3, 6, 7, 8, 9, 10], 100, 2))
    weak = np.array(walk(2, [1, 2, 3, 6, 7, 8, 9, 10], 300, 0))
    weak[:, 6] = [0.5, 0.7] * 4
    rows = np.concatenate([strong, weak])
    frames = {
        threshold: {i: out[out[:, 1] == i][:, 0].tolist() for i in (1, 2)}
        for threshold in (0.0, 0.6, 0.61, 0.9, 0.91)
        for out in [interpolate_gaps(rows, max_gap=20, min_track_score=threshold)]
    }
    seen = [1, 2, 3, 6, 7, 8, 9, 10]
    assert frames[0.0] == frames[0.6] == {1: list(range(1, 11)), 2: list(range(1, 11))}
    assert frames[0.61] == frames[0.9] == {1: list(range(1, 11)), 2: seen}
    assert frames[0.91] == {1: seen, 2: seen}
    filled = interpolate_gaps(rows, max_gap=20)
    assert filled[(filled[:, 1] == 2) & (filled[:, 0] == 4), 6].tolist() == [0.5]  # the lower score of the two


def test_detector_track_extends_tracks_offline_only(tmp_path):
    # A person walking right, detected weakly (0.4, under every start threshold) in frames 1-9,
    # then strongly: online the track starts at frame 10; extended, the results start at frame 1.
    seq, det_file = write_sequence(tmp_path, {f: 0.4 if f < 10 else 0.9 for f in range(1, 31)}, 30)
    runs = {
        miss: track_sequence(
            FrameSource(seq),
            detections_from_file(det_file),
            ByteTracker(min_hits=1),
            tmp_path / f"out{miss}",
            extend_max_miss=miss,
            progress=False,
        )  # fmt: skip
        for miss in (None, 0)
    }
    assert runs[None].rows[:, 0].min() == 10 and runs[0].online_rows[:, 0].min() == 10
    assert runs[0].rows[:, 0].tolist() == list(range(1, 31)) and set(runs[0].rows[:, 1].tolist()) == {1}


def test_extension_settings_are_checked():
    track = parse_config(load_config("_base_/trackers/default", ["track.extend_max_miss=2"])).track
    assert (track.extend_max_miss, track.extend_min_iou, track.extend_min_track_score) == (2, 0.5, 0.6)
    with pytest.raises(ConfigError, match=r"track\.extend_min_track_score: 1\.2; expected a number in \[0, 1\]$"):
        parse_config(load_config("_base_/trackers/default", ["track.extend_min_track_score=1.2"]))
    with pytest.raises(ConfigError, match=r"track\.interpolate_min_coverage: -0\.1; expected a number in \[0, 1\]$"):
        parse_config(load_config("_base_/trackers/default", ["track.interpolate_min_coverage=-0.1"]))
    with pytest.raises(ConfigError, match=r"track\.interpolate_min_track_score: 1\.5; expected a number in \[0, 1\]$"):
        parse_config(load_config("_base_/trackers/default", ["track.interpolate_min_track_score=1.5"]))
    with pytest.raises(ConfigError, match=r"track\.extend_max_miss: -1; expected a number >= 0$"):
        parse_config(load_config("_base_/trackers/default", ["track.extend_max_miss=-1"]))
    with pytest.raises(ConfigError, match=r"track\.extend_min_iou: 1\.5; expected a number in \(0, 1\]$"):
        parse_config(load_config("_base_/trackers/default", ["track.extend_min_iou=1.5"]))
    with pytest.raises(ConfigError, match=r"track\.extend_miss: unknown key; did you mean 'track\.extend_max_miss'\?$"):
        load_config("_base_/trackers/default", ["track.extend_miss=1"])
