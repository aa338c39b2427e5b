"""Runs the peer trackers on a MOTChallenge sequence; called by bench/track_bench.py with the
Python of the peers' own environment (bench/.venv-peers: sort-track, supervision 0.25.1 and
BoxMOT 25.0 with its torch pinned; never project dependencies). Writes NAME.txt (MOTChallenge
results) per tracker into OUT and prints their tracking times (seconds, median of REPEATS
runs, images decoded beforehand) as JSON.

    PEERS_PYTHON bench/track_peers.py SEQUENCE FRAME_RATE NUM_FRAMES OUT REPEATS [NAME ...]

BoxMOT's trackers run with their constructor defaults, appearance (ReID) off. The frame goes to
each update; a sequence without images gets a black frame and camera-motion compensation off
(it has nothing to look at).
"""

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")


def frames_of(det_file: Path, num_frames: int) -> list[np.ndarray]:
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


def run_sort(frames, images, frame_rate):
    from sort.tracker import SortTracker

    tracker = SortTracker()  # Bewley et al.'s defaults: max_age 1, min_hits 3, IoU 0.3
    out, start = [], time.perf_counter()
    for f, rows in enumerate(frames, 1):
        dets = np.column_stack([xyxy(rows), rows[:, 6], np.zeros(len(rows))]) if len(rows) else np.empty((0, 6))
        for x1, y1, x2, y2, i, _, score in tracker.update(dets, None):
            out.append([f, i, x1, y1, x2, y2, score])
    return out, time.perf_counter() - start


def run_supervision(frames, images, frame_rate):
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


def boxmot_runner(name: str):
    """A runner of BoxMOT's ``name`` (its defaults, embeddings off, frame rate given where taken)."""

    def run(frames, images, frame_rate):
        import boxmot

        cls = getattr(boxmot, name)
        kwargs = {"use_embeddings": False} if name in ("BotSort", "OccluBoost", "BoostTrack", "DeepOcSort",
                                                       "HybridSort") else {}  # fmt: skip
        if images is None:  # nothing for camera-motion compensation to look at
            kwargs.update({"BotSort": {"use_cmc": False}, "BoostTrack": {"use_cmc": False},
                           "DeepOcSort": {"cmc_off": True}}.get(name, {}))  # fmt: skip
        if name in ("ByteTrack", "BotSort"):
            kwargs["frame_rate"] = int(round(frame_rate))
        tracker = cls(**kwargs)
        blank = np.zeros((480, 640, 3), np.uint8)
        out, start = [], time.perf_counter()
        for f, rows in enumerate(frames, 1):
            dets = np.column_stack([xyxy(rows), rows[:, 6], np.zeros(len(rows))]) if len(rows) else np.zeros((0, 6))
            tracks = tracker.update(dets, blank if images is None else images[f - 1])
            for x1, y1, x2, y2, i, score, *_ in np.asarray(tracks).reshape(-1, 8):
                out.append([f, i, x1, y1, x2, y2, score])
        return out, time.perf_counter() - start

    return run


RUNNERS = {
    "SORT": run_sort,
    "ByteTrack-supervision": run_supervision,
    **{f"BoxMOT-{name}": boxmot_runner(name) for name in
       ("ByteTrack", "OcSort", "BotSort", "OccluBoost", "BoostTrack", "SFSORT", "DeepOcSort", "HybridSort")},
}  # fmt: skip


def main() -> None:
    sequence, frame_rate, num_frames = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    out_dir, repeats, names = Path(sys.argv[4]), int(sys.argv[5]), sys.argv[6:] or list(RUNNERS)
    frames = frames_of(sequence / "det" / "det.txt", num_frames)
    images = None
    if (sequence / "img1").is_dir():
        import cv2

        images = [cv2.imread(str(p)) for p in sorted((sequence / "img1").glob("*.jpg"))]
    seconds = {}
    for name in names:
        times = []
        for _ in range(repeats):
            out, dt = RUNNERS[name](frames, images, frame_rate)
            times.append(dt)
        write(out_dir / f"{name}.txt", out)
        seconds[name] = sorted(times)[len(times) // 2]
    print(json.dumps(seconds))


if __name__ == "__main__":
    main()
