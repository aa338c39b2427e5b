"""Runs the peer trackers on a MOTChallenge det file; called by bench/track_bench.py with the
Python of the peers' own environment (supervision 0.25.1 and sort-track, never project
dependencies). Writes SORT.txt and ByteTrack-supervision.txt (MOTChallenge results) into OUT
and prints their tracking times as JSON.

    PEERS_PYTHON bench/track_peers.py DET_TXT FRAME_RATE NUM_FRAMES OUT
"""

import json
import sys
import time
from pathlib import Path

import numpy as np


def frames_of(det_file: str, num_frames: int) -> list[np.ndarray]:
    rows = np.loadtxt(det_file, delimiter=",", ndmin=2)
    return [rows[rows[:, 0] == f] for f in range(1, num_frames + 1)]


def xyxy(rows: np.ndarray) -> np.ndarray:
    return np.column_stack([rows[:, 2], rows[:, 3], rows[:, 2] + rows[:, 4], rows[:, 3] + rows[:, 5]])


def write(path: Path, out: list[list[float]]) -> None:
    lines = [
        f"{int(f)},{int(i)},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{s:.4f},-1,-1,-1"
        for f, i, x1, y1, x2, y2, s in out
    ]
    path.write_text("\n".join(lines) + "\n")


def run_sort(frames: list[np.ndarray]) -> tuple[list, float]:
    from sort.tracker import SortTracker

    tracker = SortTracker()  # Bewley et al.'s defaults: max_age 1, min_hits 3, IoU 0.3
    out, start = [], time.perf_counter()
    for f, rows in enumerate(frames, 1):
        dets = np.column_stack([xyxy(rows), rows[:, 6], np.zeros(len(rows))]) if len(rows) else np.empty((0, 6))
        for x1, y1, x2, y2, i, _, score in tracker.update(dets, None):
            out.append([f, i, x1, y1, x2, y2, score])
    return out, time.perf_counter() - start


def run_supervision(frames: list[np.ndarray], frame_rate: float) -> tuple[list, float]:
    import supervision as sv

    tracker = sv.ByteTrack(frame_rate=int(round(frame_rate)))  # its defaults otherwise
    out, start = [], time.perf_counter()
    for f, rows in enumerate(frames, 1):
        dets = sv.Detections(
            xyxy=xyxy(rows).reshape(-1, 4).astype(np.float32),
            confidence=rows[:, 6].astype(np.float32),
            class_id=np.zeros(len(rows), int),
        )
        tracked = tracker.update_with_detections(dets)
        for box, i, score in zip(tracked.xyxy, tracked.tracker_id, tracked.confidence, strict=True):
            out.append([f, i, *box.tolist(), float(score)])
    return out, time.perf_counter() - start


def main() -> None:
    det_file, frame_rate, num_frames, out_dir = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    frames = frames_of(det_file, num_frames)
    seconds = {}
    for name, runner in (("SORT", run_sort), ("ByteTrack-supervision", lambda fr: run_supervision(fr, frame_rate))):
        times = []
        for _ in range(5):
            out, dt = runner(frames)
            times.append(dt)
        write(out_dir / f"{name}.txt", out)
        seconds[name] = sorted(times)[len(times) // 2]
    print(json.dumps(seconds))


if __name__ == "__main__":
    main()
