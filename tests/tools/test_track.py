"""tools/track.py end to end: public detections with metrics, a detector checkpoint on a video,
and one-line errors for bad input."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import REPO, shared_dir, write_sequence

TUD = shared_dir() / "data" / "mot" / "TUD-Campus"
pytestmark = pytest.mark.slow  # each case starts the tool (torch import included)


def track(*args):
    cmd = [sys.executable, str(REPO / "tools" / "track.py"), *map(str, args), "--no-progress"]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)


def test_public_detections_with_ground_truth(tmp_path):
    result = track(TUD, "--dets", TUD / "det" / "det.txt", "--gt", TUD / "gt" / "gt.txt", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "71 frames" in result.stdout and "| MOTA |" in result.stdout and "| IDF1 |" in result.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["mota"] >= 0.63 and metrics["idf1"] >= 0.67
    assert (tmp_path / "results.txt").read_text().startswith("1,1,")


def test_detector_checkpoint_on_a_video(tmp_path):
    import torch

    from detector import build_model, load_config
    from detector.utils.checkpoint import save_checkpoint

    cfg = load_config(REPO / "configs" / "_base_" / "models" / "yolox_nano.yaml", ["model.head.num_classes=1"])
    cfg["data"] = {"imgsz": 96}
    torch.manual_seed(0)
    save_checkpoint(
        {"config": cfg, "model": build_model(cfg).state_dict(), "class_names": ["person"]}, tmp_path / "m.pt"
    )
    writer = cv2.VideoWriter(str(tmp_path / "v.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (128, 96))
    for t in range(8):
        frame = np.full((96, 128, 3), 200, np.uint8)
        frame[30:70, 10 + 8 * t : 30 + 8 * t] = 20
        writer.write(frame)
    writer.release()
    out = tmp_path / "out"
    result = track(tmp_path / "v.mp4", "--ckpt", tmp_path / "m.pt", "--out", out, "--classes", "all", "--set",
                   "track.detector_conf=0.0")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "8 frames" in result.stdout
    assert (out / "results.txt").is_file()
    video = cv2.VideoCapture(str(out / "annotated.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 8


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1,-1,10,10,20,40", None),
        ("2,-1,10,10,abc,40,0.9", ":2: "),
        ("2,-1,10,10,nan,40,0.9", ":2: "),
        ("2,-1,10,10,-5,40,0.9", ":2: "),
        ("2,-1,10,10", ":2: 4 fields"),
    ],
)
def test_bad_det_lines_are_one_line_errors_and_nothing_is_written(tmp_path, line, message):
    dets = tmp_path / "det.txt"
    dets.write_text("1,-1,10,10,20,40,0.9\n" + line + "\n")
    out = tmp_path / "out"
    result = track(TUD, "--dets", dets, "--out", out)
    if message is None:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {dets}{message}"), result.stderr
    assert not (out / "results.txt").exists()


def test_unreadable_sources_are_one_line_errors(tmp_path):
    (tmp_path / "fake.avi").write_text("not a video")
    (tmp_path / "empty").mkdir()
    for source, message in [
        (tmp_path / "fake.avi", "cannot open as a video"),
        (tmp_path / "empty", "no images"),
        (tmp_path / "missing.mp4", "no such video, image folder or MOTChallenge sequence"),
    ]:
        result = track(source, "--motion", "--out", tmp_path / "out")
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert message in result.stderr and str(source) in result.stderr and "Traceback" not in result.stderr
    result = track(TUD, "--dets", TUD / "det" / "det.txt", "--classes", "person")
    assert (
        result.returncode == 2
        and "--classes: expected class labels (0, 1, ...) or 'all', got 'person'" in result.stderr
    )


def test_split_tracks_are_joined_as_the_track_settings_say(tmp_path):
    # One person walking right, unseen for frames 11-50; the tracker keeps lost tracks 30 frames.
    seq = tmp_path / "SEQ"
    (seq / "det").mkdir(parents=True)
    (seq / "seqinfo.ini").write_text(
        "[Sequence]\nname=SEQ\nimDir=img1\nframeRate=30\nseqLength=60\nimWidth=640\nimHeight=480\nimExt=.jpg\n"
    )
    (seq / "det" / "det.txt").write_text(
        "".join(f"{f},-1,{100 + 2 * f},100,40,100,0.9\n" for f in [*range(1, 11), *range(51, 61)])
    )
    ids = {}
    for gap in (0, 60):
        out = tmp_path / f"out{gap}"
        result = track(seq, "--dets", seq / "det" / "det.txt", "--out", out, "--no-video", "--set",
                       "track.tracker.max_age=30", f"track.link_max_gap={gap}")  # fmt: skip
        assert result.returncode == 0, result.stderr
        ids[gap] = set(np.loadtxt(out / "results.txt", delimiter=",", ndmin=2)[:, 1].tolist())
    assert len(ids[0]) == 2 and ids[60] == {1.0}


@pytest.mark.parametrize(
    ("step", "score", "key", "value"),
    [
        # Detected every third frame (10 of the 28 frames it spans): left sparse when tracks must
        # cover half their span.
        (3, 0.9, "track.interpolate_min_coverage", 0.5),
        # Scored 0.5 (full_range's thresholds start it), every other frame: left with its gaps
        # when tracks must score 0.6 on average.
        (2, 0.5, "track.interpolate_min_track_score", 0.6),
    ],
)
def test_gaps_are_filled_only_in_tracks_the_settings_allow(tmp_path, step, score, key, value):
    seq, det_file = write_sequence(tmp_path, {f: score for f in range(1, 29, step)}, 30)
    frames = {}
    for setting in (0.0, value):
        out = tmp_path / f"out{setting}"
        result = track(seq, "--dets", det_file, "--out", out, "--no-video", "--set",
                       f"{key}={setting}", "track.full_range.below=0.6")  # fmt: skip
        assert result.returncode == 0, result.stderr
        frames[setting] = np.loadtxt(out / "results.txt", delimiter=",", ndmin=2)[:, 0].tolist()
    last = max(range(1, 29, step))
    assert frames[0.0] == list(range(1, last + 1)) and frames[value] == list(range(1, 29, step))


def test_full_range_settings_apply_to_det_files_that_score_under_below(tmp_path):
    # One person walking, scored 0.4 in one file (a detector's whole range: it reaches under 0.5)
    # and 0.55 in the other (a file cut at 0.5). With full_range's thresholds (0.25) the first is
    # tracked; the tracker's own new-track threshold (0.7) starts no track in the second.
    seq = tmp_path / "SEQ"
    (seq / "det").mkdir(parents=True)
    (seq / "seqinfo.ini").write_text(
        "[Sequence]\nname=SEQ\nimDir=img1\nframeRate=30\nseqLength=20\nimWidth=640\nimHeight=480\nimExt=.jpg\n"
    )
    settings = ["track.tracker.new_track_threshold=0.7", "track.full_range.below=0.5",
                "track.full_range.tracker.high_threshold=0.25",
                "track.full_range.tracker.new_track_threshold=0.25"]  # fmt: skip
    ids, said = {}, {}
    for score in (0.4, 0.55):
        dets = tmp_path / f"det{score}.txt"
        dets.write_text("".join(f"{f},-1,{100 + 3 * f},100,40,100,{score}\n" for f in range(1, 21)))
        out = tmp_path / f"out{score}"
        result = track(seq, "--dets", dets, "--out", out, "--no-video", "--set", *settings)
        assert result.returncode == 0, result.stderr
        said[score] = "track.full_range.tracker applies" in result.stdout
        ids[score] = {line.split(",")[1] for line in (out / "results.txt").read_text().splitlines()}
    assert ids == {0.4: {"1"}, 0.55: set()} and said == {0.4: True, 0.55: False}
