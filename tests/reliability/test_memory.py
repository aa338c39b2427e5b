"""Long runs keep a flat memory: the tracker forgets lost tracks, so its state and its
allocations stay bounded over tens of thousands of frames with ever new people."""

import tracemalloc

import numpy as np
import pytest

from detector.tracking.tracker import ByteTracker


def walkers(frame: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """About 20 people at a time, each crossing the image in ~100 frames, new ones all the time."""
    starts = np.arange(max(0, frame - 100), frame + 1, 5)  # one person enters every 5 frames
    x = (frame - starts) * 8.0 + rng.normal(0, 1, len(starts))
    y = (starts * 37 % 600).astype(float)
    boxes = np.column_stack([x, y, x + 40, y + 100])
    return boxes, rng.uniform(0.5, 1.0, len(boxes))


@pytest.mark.slow
def test_tracker_state_and_allocations_stay_flat_over_12000_frames():
    tracker, rng = ByteTracker(frame_rate=30), np.random.default_rng(0)
    for frame in range(2000):  # warm up: the steady number of live and lost tracks
        tracker.update(*walkers(frame, rng))
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    peak_tracks, max_id = 0, 0
    for frame in range(2000, 12000):
        tracks = tracker.update(*walkers(frame, rng))
        peak_tracks = max(peak_tracks, len(tracker.ids))
        max_id = max(max_id, int(tracks.ids.max(initial=0)))
    grown = tracemalloc.get_traced_memory()[0] - baseline
    tracemalloc.stop()
    print(f"{max_id} tracks over 10,000 frames, at most {peak_tracks} kept at once, {grown} bytes grown")
    assert max_id > 1500  # thousands of people came and went
    assert peak_tracks < 100  # live + lost tracks only: 21 walkers, lost ones kept max_age frames
    assert grown < 200_000, f"{grown} bytes more after 10,000 frames"
