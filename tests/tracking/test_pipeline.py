"""Frame sources, whole-sequence tracking and its outputs, on TUD-Campus and made-up sequences."""

import cv2
import numpy as np
import pytest
from conftest import shared_dir

from detector import load_config
from detector.commands.track import DEFAULT_TRACKER
from detector.config_sections import parse_config
from detector.registry import TRACKERS
from detector.tracking.metrics import evaluate_mot
from detector.tracking.mot_io import read_mot
from detector.tracking.motion import MotionDetector
from detector.tracking.pipeline import detections_from_file, track_sequence
from detector.tracking.sources import FrameSource
from detector.tracking.tracker import BotSortTracker, ByteTracker

TUD = shared_dir() / "data" / "mot" / "TUD-Campus"


def write_video(path, frames=20, size=(120, 160), fps=12.0):
    """A grey video with a dark 20 x 40 block walking right 4 px per frame."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size[1], size[0]))
    assert writer.isOpened()
    for t in range(frames):
        image = np.full((*size, 3), 180, np.uint8)
        image[40:80, 10 + 4 * t : 30 + 4 * t] = 30
        writer.write(image)
    writer.release()


def test_tud_campus_public_detections_reach_the_targets(tmp_path):
    source = FrameSource(TUD)
    assert source.frame_rate == 25 and source.num_frames == 71 and not source.has_images
    settings = parse_config(load_config(DEFAULT_TRACKER)).track  # what `detector track` runs
    detect = detections_from_file(TUD / "det" / "det.txt")
    floor = detect.lowest_score
    assert floor == pytest.approx(0.503938)  # cut at 0.5: the default's own thresholds, not track.full_range's
    tracker = TRACKERS.build({**settings.tracker_settings(floor), "frame_rate": source.frame_rate}, "track.tracker")
    done = track_sequence(source, detect, tracker, tmp_path, progress=False,
                          interpolate_max_gap=settings.interpolate_max_gap)  # fmt: skip
    assert done.frames == 71 and done.video_path is None and not (tmp_path / "annotated.mp4").exists()
    written = read_mot(tmp_path / "results.txt", "results")
    np.testing.assert_allclose(written[:, :7], done.rows, atol=0.006)
    metrics = evaluate_mot(read_mot(TUD / "gt" / "gt.txt", "gt"), written)
    # The bar: SORT reaches MOTA 0.627 / IDF1 0.606 here, ByteTrack (supervision) 0.596 / 0.666
    # (offline: 0.627 / 0.606 and 0.618 / 0.685, bench/README.md).
    assert metrics["mota"] >= 0.65 and metrics["idf1"] >= 0.70, metrics
    online = track_sequence(
        FrameSource(TUD), detections_from_file(TUD / "det" / "det.txt"), tracker, tmp_path / "b", interpolate=False,
        progress=False,
    )  # fmt: skip
    assert len(online.rows) < len(done.rows)  # interpolation only adds the bridged frames


def test_video_source_tracks_and_writes_an_annotated_video(tmp_path):
    write_video(tmp_path / "walk.mp4")
    source = FrameSource(tmp_path / "walk.mp4")
    assert source.frame_rate == pytest.approx(12.0) and source.num_frames == 20 and source.has_images

    def detect(frame, image):
        dark = np.argwhere(image[..., 0] < 100)
        (y1, x1), (y2, x2) = dark.min(axis=0), dark.max(axis=0) + 1
        return np.array([[x1, y1, x2, y2]], float), np.array([0.9]), np.array([0])

    done = track_sequence(source, detect, ByteTracker(frame_rate=12), tmp_path / "out", progress=False)
    assert done.frames == 20 and set(done.rows[:, 1].tolist()) == {1}
    video = cv2.VideoCapture(str(tmp_path / "out" / "annotated.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 20
    ok, first = video.read()
    assert ok and first.shape == (120, 160, 3)
    assert not list((tmp_path / "out").glob(".*partial*"))


def test_an_interrupted_run_leaves_nothing_that_looks_complete(tmp_path):
    write_video(tmp_path / "walk.mp4")

    def failing(frame, image):
        if frame == 10:
            raise RuntimeError("detector crashed")
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)

    with pytest.raises(RuntimeError, match="detector crashed"):
        track_sequence(FrameSource(tmp_path / "walk.mp4"), failing, ByteTracker(), tmp_path / "out", progress=False)
    assert list((tmp_path / "out").iterdir()) == []


def test_image_folder_and_sequence_folder_sources(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (2, 1, 3):
        cv2.imwrite(str(folder / f"{i:04d}.png"), np.full((8, 8, 3), i, np.uint8))
    (folder / "notes.txt").write_text("not an image")
    frames = list(FrameSource(folder, fps=5))
    assert [f for f, _ in frames] == [1, 2, 3] and [int(im[0, 0, 0]) for _, im in frames] == [1, 2, 3]
    assert FrameSource(folder).frame_rate == 30.0

    seq = tmp_path / "SEQ"
    (seq / "img1").mkdir(parents=True)
    (seq / "seqinfo.ini").write_text(
        "[Sequence]\nname=SEQ\nimDir=img1\nframeRate=14\nseqLength=2\nimWidth=8\nimHeight=8\nimExt=.jpg\n"
    )
    for i in (1, 2):
        cv2.imwrite(str(seq / "img1" / f"{i:06d}.jpg"), np.zeros((8, 8, 3), np.uint8))
    source = FrameSource(seq)
    assert source.frame_rate == 14 and len(list(source)) == 2
    cv2.imwrite(str(seq / "img1" / "000003.jpg"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"img1: 3 images but seqinfo.ini says seqLength=2"):
        FrameSource(seq)


def test_source_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing: no such video, image folder or MOTChallenge sequence"):
        FrameSource(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: no images"):
        FrameSource(tmp_path / "empty")
    (tmp_path / "fake.mp4").write_text("this is not a video")
    with pytest.raises(ValueError, match=r"fake.mp4: cannot open as a video"):
        FrameSource(tmp_path / "fake.mp4")
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "0001.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(ValueError, match=r"0001.jpg: not a readable image \(frame 1\)"):
        list(FrameSource(folder))


def test_frames_without_detections_and_sequences_that_start_empty(tmp_path):
    dets = tmp_path / "det.txt"
    dets.write_text("5,-1,10,10,20,40,0.9\n6,-1,12,10,20,40,0.9\n9,-1,18,10,20,40,0.9\n")
    seq = tmp_path / "SEQ"
    seq.mkdir()
    (seq / "seqinfo.ini").write_text(
        "[Sequence]\nname=SEQ\nimDir=img1\nframeRate=30\nseqLength=12\nimWidth=64\nimHeight=64\nimExt=.jpg\n"
    )
    done = track_sequence(FrameSource(seq), detections_from_file(dets), ByteTracker(), tmp_path / "out", progress=False)
    assert done.frames == 12
    # Started at 5, confirmed at 6 (frame 5 backfilled), lost in 7 and 8, found in 9: the gap is interpolated.
    np.testing.assert_array_equal(done.rows[:, 0], [5, 6, 7, 8, 9])
    np.testing.assert_array_equal(done.online_rows[:, 0], [6, 9])
    assert set(done.rows[:, 1].tolist()) == {1}


def test_motion_detector_finds_a_moving_block(tmp_path):
    write_video(tmp_path / "walk.mp4", frames=30)
    detector = MotionDetector(min_area=200, warmup=3)
    found = [detector(f, im) for f, im in FrameSource(tmp_path / "walk.mp4")]
    assert all(len(b) == 0 for b, _, _ in found[:3])
    boxes, scores, labels = found[20]
    assert len(boxes) >= 1 and labels.tolist() == [0] * len(boxes) and scores.max() == pytest.approx(0.9)
    best = boxes[np.argmax(scores)]
    # The block is at x 90..110, y 40..80 in frame 21 (MP4 blur and the opening move edges a few px).
    assert 38 <= best[1] <= 44 and 76 <= best[3] <= 82 and 84 <= best[0] <= 96 and 106 <= best[2] <= 114
    with pytest.raises(ValueError, match="no image for the motion detector"):
        detector(31, None)


def test_the_pipeline_hands_frames_to_camera_motion_compensation(tmp_path):
    # A camera panning 5 px right per frame over a textured scene with one standing person:
    # with the frames the tracker sees the pan; the detections move with the image.
    rng = np.random.default_rng(0)
    scene = cv2.GaussianBlur(rng.integers(0, 256, (200, 400, 3)).astype(np.uint8), (0, 0), 2.0)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(6):
        cv2.imwrite(str(folder / f"{i:03d}.png"), scene[:, 100 - 5 * i : 260 - 5 * i])

    def detect(frame, image):
        x = 60 + 5 * (frame - 1)
        return np.array([[x, 40.0, x + 30, 120]]), np.array([0.9]), np.zeros(1, np.int64)

    tracker = BotSortTracker()
    run = track_sequence(FrameSource(folder), detect, tracker, tmp_path / "out", write_video=False, progress=False)
    assert tracker.camera.previous is not None  # it was given the frames
    assert set(run.rows[:, 1]) == {1}
    np.testing.assert_allclose(run.rows[-1, 2], 60 + 5 * 5, atol=1.0)


def test_backfill_adds_the_frames_before_each_confirmation_to_the_results(tmp_path):
    detect = detections_from_file(TUD / "det" / "det.txt")
    runs = {
        flag: track_sequence(FrameSource(TUD), detect, ByteTracker(frame_rate=25), tmp_path / str(flag),
                             interpolate=False, backfill=flag, progress=False)
        for flag in (False, True)
    }  # fmt: skip
    plain, filled = runs[False], runs[True]
    np.testing.assert_array_equal(plain.rows, plain.online_rows)
    np.testing.assert_array_equal(filled.online_rows, plain.online_rows)
    added = len(filled.rows) - len(plain.rows)
    # min_hits 2: one frame per track not confirmed on the first frame
    first_frame_ids = set(plain.rows[plain.rows[:, 0] == 1, 1].astype(int))
    later = set(plain.rows[:, 1].astype(int)) - first_frame_ids
    assert added == len(later) > 0
    for track_id in later:
        rows = filled.rows[filled.rows[:, 1] == track_id]
        assert rows[0, 0] == plain.rows[plain.rows[:, 1] == track_id][0, 0] - 1
    keys = filled.rows[:, 0] * 1000 + filled.rows[:, 1]
    assert (np.diff(keys) > 0).all()  # sorted by frame then id, no duplicates


def test_interpolation_fills_gaps_up_to_its_own_limit_not_max_age(tmp_path):
    # A person standing still, seen on frames 1-3, 23-25 (20 frames after 3) and 50-52 (25 after
    # 25); lost tracks are kept 60 frames, so the tracker re-finds them with the same id each time.
    dets = tmp_path / "det.txt"
    dets.write_text("".join(f"{f},-1,100,100,40,100,0.9\n" for f in (1, 2, 3, 23, 24, 25, 50, 51, 52)))
    seq = tmp_path / "SEQ"
    seq.mkdir()
    (seq / "seqinfo.ini").write_text(
        "[Sequence]\nname=SEQ\nimDir=img1\nframeRate=30\nseqLength=52\nimWidth=640\nimHeight=480\nimExt=.jpg\n"
    )
    done = track_sequence(FrameSource(seq), detections_from_file(dets), ByteTracker(max_age=60), tmp_path / "out",
                          interpolate_max_gap=20, progress=False)  # fmt: skip
    assert set(done.online_rows[:, 1].tolist()) == {1}
    # The 20-frame gap is filled (frames 4-22), the 25-frame one is not.
    np.testing.assert_array_equal(done.rows[:, 0], [*range(1, 26), 50, 51, 52])


def test_lowest_score_of_a_det_file(tmp_path):
    path = tmp_path / "det.txt"
    path.write_text("1,-1,10,10,20,40,0.9,-1,-1,-1\n2,-1,12,10,20,40,0.31,-1,-1,-1\n3,-1,14,10,20,40,0.75\n")
    detect = detections_from_file(path)
    assert detect.lowest_score == pytest.approx(0.31)
    boxes, scores, labels = detect(2, None)
    np.testing.assert_allclose(boxes, [[12, 10, 32, 50]])
    assert scores.tolist() == [0.31] and labels.tolist() == [0] and len(detect(4, None)[0]) == 0
    path.write_text("")
    assert detections_from_file(path).lowest_score is None


def test_the_track_command_reads_a_det_file_once(tmp_path, monkeypatch):
    import detector.tracking.pipeline as pipeline
    from detector.commands.track import main

    reads = []

    def counting_read_mot(path, *args, **kwargs):
        reads.append(str(path))
        return read_mot(path, *args, **kwargs)

    monkeypatch.setattr(pipeline, "read_mot", counting_read_mot)
    dets = TUD / "det" / "det.txt"
    assert main([str(TUD), "--dets", str(dets), "--out", str(tmp_path), "--no-video", "--no-progress"]) == 0
    assert reads == [str(dets)]
    assert len(np.loadtxt(tmp_path / "results.txt", delimiter=",")) > 0
