"""Track a whole sequence: frames in, ``results.txt`` (MOTChallenge) and ``annotated.mp4`` out.

Detections come from a callable ``detect(frame, image) -> (boxes [N, 4] xyxy pixels, scores [N],
labels [N])``: a detector (``detections_from_predictor``) or a MOT det file
(``detections_from_file``). Outputs appear only when the whole sequence is done: the results
file is written atomically and the video under a temporary name that is renamed at the end, so
an interrupted run never leaves a file that looks complete.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from detector.tracking.mot_io import group_by_frame, mot_to_xyxy, read_mot, write_mot_results, xyxy_to_mot_xywh
from detector.tracking.postprocess import extend_tracks, interpolate_gaps, link_tracklets
from detector.tracking.sources import FrameSource
from detector.tracking.tracker import ByteTracker, Tracks
from detector.utils.visualize import class_color

Detect = Callable[[int, "np.ndarray | None"], tuple[np.ndarray, np.ndarray, np.ndarray]]


class FileDetections:
    """``detect`` from a MOTChallenge det file (``frame,-1,x,y,w,h,score,...``), read once; every
    box is a pedestrian (label 0). Malformed lines fail here, before any frame is tracked.
    ``lowest_score``: the lowest score in the file, the confidence it was cut at (MOTChallenge's
    public detections: 0.5); None when it has no detections."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        rows = read_mot(path, "detections")
        self.lowest_score = float(rows[:, 6].min()) if len(rows) else None
        self.by_frame = group_by_frame(rows)

    def __call__(self, frame: int, image: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = self.by_frame.get(frame)
        if rows is None:
            return np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)
        return mot_to_xyxy(rows), rows[:, 6].copy(), np.zeros(len(rows), np.int64)


def detections_from_file(path: str | os.PathLike[str]) -> FileDetections:
    """``detect`` from a MOTChallenge det file (``FileDetections``)."""
    return FileDetections(path)


def detections_from_predictor(predictor: Any) -> Detect:
    """``detect`` running ``predictor`` (``detector.inference.Predictor``) on each image."""

    def detect(frame: int, image: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if image is None:
            raise ValueError(f"frame {frame}: no image to run the detector on (a sequence without img1/?)")
        det = predictor(image)[0].to("cpu")
        return det.boxes.numpy().astype(np.float64), det.scores.numpy().astype(np.float64), det.labels.numpy()

    return detect


@dataclasses.dataclass
class TrackingRun:
    """What ``track_sequence`` did: ``rows`` ``[N, 7]`` (frame, id, x, y, w, h, score) as written,
    ``online_rows`` the same as the tracker emitted them frame by frame, ``frames`` tracked,
    ``tracker_seconds`` spent in the tracker alone, ``seconds`` in all, and the paths written."""

    rows: np.ndarray
    online_rows: np.ndarray
    frames: int
    tracker_seconds: float
    seconds: float
    results_path: Path
    video_path: Path | None


def draw_tracks(
    image: np.ndarray, tracks: Tracks, trails: dict[int, deque], class_names: Sequence[str] | None = None
) -> np.ndarray:
    """A copy of ``image`` with each track's box, ``id`` (and class name) and trail of past centres."""
    canvas = image.copy()
    thickness = max(1, round(min(canvas.shape[:2]) / 320))
    for box, track_id, label in zip(tracks.boxes, tracks.ids, tracks.labels, strict=True):
        color = class_color(int(track_id))
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        caption = f"{int(track_id)}" if class_names is None else f"{int(track_id)} {class_names[int(label)]}"
        cv2.putText(canvas, caption, (x1, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 2, cv2.LINE_AA)
        points = np.array(trails.get(int(track_id), ()), dtype=np.int32).reshape(-1, 1, 2)
        if len(points) > 1:
            cv2.polylines(canvas, [points], False, color, thickness)
    return canvas


def track_sequence(
    source: FrameSource,
    detect: Detect,
    tracker: ByteTracker,
    out_dir: str | os.PathLike[str],
    write_video: bool = True,
    interpolate: bool = True,
    interpolate_max_gap: int = 20,
    interpolate_min_coverage: float = 0.0,
    interpolate_min_track_score: float = 0.0,
    backfill: bool = True,
    link_max_gap: int = 0,
    link_min_iou: float = 0.5,
    extend_max_miss: int | None = None,
    extend_min_iou: float = 0.5,
    extend_min_track_score: float = 0.0,
    trail: int = 30,
    class_names: Sequence[str] | None = None,
    progress: bool = True,
) -> TrackingRun:
    """Track every frame of ``source``; write ``out_dir/results.txt`` and, when ``write_video``
    and the source has images, ``out_dir/annotated.mp4`` (boxes, ids, ``trail`` frames of trail).

    ``interpolate``: fill the gaps the tracker bridged, of at most ``interpolate_max_gap`` frames
    between a track's two rows, in the results file by linear interpolation (``interpolate_gaps``;
    longer ones are more often a wrong re-association than a hidden person; only in tracks with
    rows in at least ``interpolate_min_coverage`` of the frames they span and a mean score of at
    least ``interpolate_min_track_score``); ``backfill``: add
    each track's detections from the frames before it was confirmed (``Tracks.earlier``);
    ``link_max_gap`` > 0: join tracks that continue one another across at most that many frames
    (``link_tracklets``, before interpolation, so joined gaps are filled too); ``extend_max_miss``
    not None: then extend each track at both ends with the detections that continue it
    (``extend_tracks``: weak ones down to the tracker's ``low_threshold``, IoU >=
    ``extend_min_iou``, stopping after more than ``extend_max_miss`` frames without one; tracks
    whose mean score is below ``extend_min_track_score`` are left as they are). The
    video shows the online tracks.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    video_path = out / "annotated.mp4" if write_video and source.has_images else None
    partial = out / ".annotated.partial.mp4"
    writer: cv2.VideoWriter | None = None
    trails: dict[int, deque] = {}
    last_seen: dict[int, int] = {}
    rows: list[np.ndarray] = []
    earlier: list[np.ndarray] = []
    # Extension needs every frame's detections and each track's class once the sequence is done.
    seen: list[np.ndarray] = []
    track_labels: dict[int, int] = {}
    tracker.reset()
    tracker_seconds, start, frames = 0.0, time.perf_counter(), 0
    bar = tqdm(total=source.num_frames or None, desc="tracking", unit="frame", disable=not progress, dynamic_ncols=True)
    try:
        for frame, image in source:
            boxes, scores, labels = detect(frame, image)
            tick = time.perf_counter()
            tracks = tracker.update(boxes, scores, labels, image)
            tracker_seconds += time.perf_counter() - tick
            frames += 1
            if extend_max_miss is not None:
                if len(scores):
                    seen.append(np.column_stack([np.full(len(scores), frame), labels, xyxy_to_mot_xywh(boxes), scores]))
                track_labels.update(zip(tracks.ids.tolist(), tracks.labels.tolist(), strict=True))
            if len(tracks):
                xywh = xyxy_to_mot_xywh(tracks.boxes)
                rows.append(np.column_stack([np.full(len(tracks), frame), tracks.ids, xywh, tracks.scores]))
            if len(tracks.earlier):
                past = tracks.earlier
                earlier.append(np.column_stack([past[:, :2], xyxy_to_mot_xywh(past[:, 2:6]), past[:, 6]]))
            if video_path is not None and image is not None:
                _update_trails(trails, last_seen, tracks, frame, trail)
                if writer is None:
                    writer = _open_writer(partial, source.frame_rate, image.shape[:2])
                writer.write(draw_tracks(image, tracks, trails, class_names))
            bar.update(1)
            bar.set_postfix_str(f"{frames / max(time.perf_counter() - start, 1e-9):.1f} fps, {len(tracks)} tracks")
        online = np.concatenate(rows) if rows else np.zeros((0, 7))
        results = np.concatenate([online, *earlier]) if backfill else online
        results = link_tracklets(results, max_gap=link_max_gap, min_iou=link_min_iou)
        if extend_max_miss is not None and seen:
            results = extend_tracks(
                results, np.concatenate(seen), extend_max_miss, extend_min_iou, tracker.low_threshold,
                track_labels=track_labels, min_track_score=extend_min_track_score,
            )  # fmt: skip
        results = results[np.lexsort((results[:, 1], results[:, 0]))]
        if interpolate:
            results = interpolate_gaps(
                results, interpolate_max_gap, interpolate_min_coverage, min_track_score=interpolate_min_track_score
            )
        results_path = write_mot_results(out / "results.txt", results)
    except BaseException:
        if writer is not None:
            writer.release()
        partial.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
        source.close()
    if writer is not None:
        writer.release()
        os.replace(partial, video_path)
    else:
        video_path = None
    return TrackingRun(results, online, frames, tracker_seconds, time.perf_counter() - start, results_path, video_path)


def _update_trails(trails: dict[int, deque], last_seen: dict[int, int], tracks: Tracks, frame: int, trail: int) -> None:
    for box, track_id in zip(tracks.boxes, tracks.ids, strict=True):
        key = int(track_id)
        trails.setdefault(key, deque(maxlen=max(trail, 1))).append(((box[0] + box[2]) / 2, box[3]))
        last_seen[key] = frame
    # Trails of tracks gone for a whole trail length are dropped, so memory stays flat.
    for key in [k for k, seen in last_seen.items() if frame - seen > trail]:
        del trails[key], last_seen[key]


def _open_writer(path: Path, fps: float, hw: tuple[int, int]) -> cv2.VideoWriter:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (hw[1], hw[0]))
    if not writer.isOpened():
        raise OSError(f"{path}: OpenCV cannot write an mp4v video here")
    return writer
