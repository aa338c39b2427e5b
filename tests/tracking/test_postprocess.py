"""Offline clean-up of finished tracks: joining tracks that continue one another
(``link_tracklets``) on hand-made trajectories, and through ``detector track``'s pipeline."""

import numpy as np
import pytest

from detector.config import load_config
from detector.config_sections import parse_config
from detector.errors import ConfigError
from detector.tracking.pipeline import detections_from_file, track_sequence
from detector.tracking.postprocess import link_tracklets
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
    dets = tmp_path / "det.txt"
    dets.write_text("".join(f"{f},-1,{100 + 2 * f},100,40,100,0.9\n" for f in [*range(1, 11), *range(51, 61)]))
    seq = tmp_path / "SEQ"
    seq.mkdir()
    (seq / "seqinfo.ini").write_text(
        "[Sequence]\nname=SEQ\nimDir=img1\nframeRate=30\nseqLength=60\nimWidth=640\nimHeight=480\nimExt=.jpg\n"
    )
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
