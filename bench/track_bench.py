"""Our tracker against SORT and supervision's ByteTrack on TUD-Campus's public detections, all
scored by the same code (motmetrics at IoU 0.5, HOTA with TrackEval), and tracker throughput.

    python bench/track_bench.py [--sequence ../shared/data/mot/TUD-Campus] [--repeats 20]

The peers run in their own environment, bench/.venv-peers (made on first use: supervision
0.25.1, the last release that ships ByteTrack, and sort-track 0.0.8, the packaged original SORT,
installed without its pins of old scipy): they are never project dependencies. Prints a markdown
table; frames/s is the tracker alone on the given detections (medians). Never part of the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from detector.tracking.metrics import evaluate_mot
from detector.tracking.mot_io import group_by_frame, mot_to_xyxy, read_mot
from detector.tracking.pipeline import detections_from_file, track_sequence
from detector.tracking.sources import FrameSource
from detector.tracking.tracker import ByteTracker

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("DETECTOR_SHARED", HERE.parents[1] / "shared"))
PEERS_VENV = HERE / ".venv-peers"
PEERS = (
    ("SORT", "SORT (sort-track 0.0.8, defaults)"),
    ("ByteTrack-supervision", "ByteTrack (supervision 0.25.1, defaults)"),
)


def peers_python() -> Path:
    python = PEERS_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "supervision==0.25.1", "filterpy"], check=True)
        subprocess.run([*pip, "--no-deps", "sort-track==0.0.8"], check=True)
    return python


def our_speed(det_file: Path, frame_rate: float, num_frames: int, repeats: int) -> float:
    """Median frames/s of ByteTracker.update over the whole sequence (detections in memory)."""
    by_frame = group_by_frame(read_mot(det_file))
    empty = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
    frames = [
        (mot_to_xyxy(by_frame[f]), by_frame[f][:, 6].copy(), np.zeros(len(by_frame[f]), np.int64))
        if f in by_frame
        else empty
        for f in range(1, num_frames + 1)
    ]
    tracker = ByteTracker(frame_rate=frame_rate)
    times = []
    for _ in range(repeats):
        tracker.reset()
        start = time.perf_counter()
        for boxes, scores, labels in frames:
            tracker.update(boxes, scores, labels)
        times.append(time.perf_counter() - start)
    return num_frames / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequence", type=Path, default=SHARED / "data" / "mot" / "TUD-Campus")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    det_file, gt = args.sequence / "det" / "det.txt", read_mot(args.sequence / "gt" / "gt.txt", "gt")
    source = FrameSource(args.sequence)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for name, interpolate in (("ours (ByteTracker, results interpolated)", True), ("ours, online only", False)):
            run = track_sequence(
                FrameSource(args.sequence), detections_from_file(det_file), ByteTracker(frame_rate=source.frame_rate),
                out / name, write_video=False, interpolate=interpolate, progress=False,
            )  # fmt: skip
            rows.append((name, evaluate_mot(gt, read_mot(run.results_path)), None))
        speed = our_speed(det_file, source.frame_rate, source.num_frames, args.repeats)
        rows[0] = (rows[0][0], rows[0][1], speed)
        rows[1] = (rows[1][0], rows[1][1], speed)
        cmd = [str(peers_python()), str(HERE / "track_peers.py"), str(det_file), str(source.frame_rate)]
        done = subprocess.run([*cmd, str(source.num_frames), tmp], capture_output=True, text=True, check=True)
        seconds = json.loads(done.stdout.strip().splitlines()[-1])
        for name, label in PEERS:
            metrics = evaluate_mot(gt, read_mot(out / f"{name}.txt"))
            rows.append((label, metrics, source.num_frames / seconds[name]))
    print(f"{args.sequence.name}, public detections, motmetrics at IoU 0.5; frames/s: tracker alone (median)")
    print()
    print("| tracker | MOTA | IDF1 | HOTA | IDSW | FP | FN | frames/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, m, fps in rows:
        hota = f"{m['hota']:.3f}" if "hota" in m else "n/a"
        shown = f"{fps:.0f}" if fps else "n/a"
        print(
            f"| {name} | {m['mota']:.3f} | {m['idf1']:.3f} | {hota} | {m['num_switches']} | "
            f"{m['num_false_positives']} | {m['num_misses']} | {shown} |"
        )


if __name__ == "__main__":
    main()
