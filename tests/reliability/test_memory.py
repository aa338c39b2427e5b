"""Long runs keep a flat memory: training's main process and its loader workers stop growing
after a few epochs (the per-epoch peaks the trainer writes to metrics.csv), and a leak of a
quarter MiB per step would show; the tracker forgets lost tracks, so its state and its
allocations stay bounded over tens of thousands of frames with ever new people."""

import csv
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from tool_runs import write_shapes_config

from detector.tracking.tracker import ByteTracker

REPO = Path(__file__).resolve().parents[2]
LEAK_SCRIPT = Path(__file__).with_name("train_with_leak.py")

STEPS_PER_EPOCH = 4  # 16 images, 4 per step
WARM_UP_EPOCHS = 10  # the allocator's pools and the mosaic buffers fill up (measured: 8 epochs)
#: Growth allowed after the warm-up, per optimiser step: measured 7 KiB for the main process.
MAX_GROWTH_PER_STEP = 32 * 1024


def train_and_read_memory(root, name: str, epochs: int, leak_bytes: int = 0) -> list[dict[str, float]]:
    """Train YOLOX-Nano with Mosaic/MixUp, 2 loader workers and an evaluation every 5 epochs,
    in a process of its own as a user's run (in the test process, earlier tests' freed memory
    would hide growth); the per-epoch memory peaks from the run's metrics.csv."""
    config = write_shapes_config(
        root, num_train=16, num_val=4, image_size=96, seed=3, name=name,
        data={"batch_size": 4, "num_workers": 2, "mix": {"mosaic_prob": 1.0, "mixup_prob": 0.5}},
        train={"name": name, "epochs": epochs, "eval_interval": 5, "no_aug_epochs": 2},
    )  # fmt: skip
    script = LEAK_SCRIPT if leak_bytes else REPO / "tools" / "train.py"
    env = dict(os.environ, LEAK_BYTES=str(leak_bytes))
    done = subprocess.run([sys.executable, str(script), str(config), "--device", "cpu", "--no-progress"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = root / "runs" / name
    assert (run_dir / "plots" / "memory.png").stat().st_size > 0
    with open(run_dir / "metrics.csv") as f:
        return [{key: float(row[key]) for key in ("ram_mb", "workers_ram_mb")} for row in csv.DictReader(f)]


def growth_per_step(rows: list[dict[str, float]], key: str) -> float:
    """Bytes per optimiser step that the peak ``key`` rose after the warm-up: from the median
    of the 5 epochs after it to the median of the last 5 (medians, because a peak can catch a
    moment when one epoch's workers have not yet exited while the next one's start)."""
    values = [row[key] for row in rows]
    early, late = values[WARM_UP_EPOCHS : WARM_UP_EPOCHS + 5], values[-5:]
    steps = (len(values) - 5 - WARM_UP_EPOCHS) * STEPS_PER_EPOCH
    return (float(np.median(late)) - float(np.median(early))) * 1024 * 1024 / steps


@pytest.mark.slow
def test_training_memory_stays_flat_and_a_leak_would_show(tmp_path):
    rows = train_and_read_memory(tmp_path, "flat", epochs=40)
    main, workers = growth_per_step(rows, "ram_mb"), growth_per_step(rows, "workers_ram_mb")
    print(
        f"main {rows[0]['ram_mb']:.1f} -> {rows[WARM_UP_EPOCHS - 1]['ram_mb']:.1f} -> {rows[-1]['ram_mb']:.1f} MiB, "
        f"workers {rows[0]['workers_ram_mb']:.1f} -> {rows[-1]['workers_ram_mb']:.1f} MiB; after the warm-up "
        f"{main / 1024:.1f} KiB/step main, {workers / 1024:.1f} KiB/step workers"
    )
    assert main < MAX_GROWTH_PER_STEP and workers < MAX_GROWTH_PER_STEP

    # The same measure catches a leak of 256 KiB per step (as keeping a tensor per step would).
    leaked = growth_per_step(train_and_read_memory(tmp_path, "leak", 20, 256 * 1024), "ram_mb")
    print(f"with the leak: {leaked / 1024:.1f} KiB/step")
    assert leaked > 4 * MAX_GROWTH_PER_STEP


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
