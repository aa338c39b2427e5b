"""Data loader throughput with Mosaic + MixUp, against the rate a training step consumes, and
the loader's memory over a long run.

    python bench/loader_speed.py [--workers 2] [--batches 40] [--repeats 3] [--memory-samples 2000]

Rows: images/s of the loader alone (YOLOX's Mosaic + MixUp, HSV, flip at 640, batch 16) on
generated shapes (JPEG, 640 x 640) and on the shared tinycoco images (real COCO JPEGs), in
worker processes and in-process; YOLOX-Nano's training step at 320 (forward, loss, backward, SGD,
EMA); their ratio. Then the memory of the loader (RSS and PSS of the main process + workers)
after 200 and after ``--memory-samples`` samples. Medians over ``--repeats`` runs. Never part of the test run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import RandomSampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import step_speed  # noqa: E402  (the training-step measurement, shared)

from detector.data.coco import CocoDataset  # noqa: E402
from detector.data.loader import build_dataloader  # noqa: E402
from detector.data.mix import MixParams  # noqa: E402
from detector.data.mix_dataset import MixDataset  # noqa: E402
from detector.data.synthetic import generate_synthetic_coco  # noqa: E402
from detector.data.transforms import TrainTransform  # noqa: E402
from detector.utils.allocator import keep_freed_memory  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DETECTOR_SHARED", REPO.parent / "shared"))
AUGMENT = [
    {"type": "HorizontalFlip", "p": 0.5},
    {"type": "HueSaturationValue", "hue_shift_limit": 10, "sat_shift_limit": 30, "val_shift_limit": 20, "p": 1.0},
]


def mixed(base: CocoDataset, imgsz: int, mosaic: bool = True, buffer_size: int = 64) -> MixDataset:
    params = MixParams(mosaic_prob=1.0 if mosaic else 0.0, buffer_size=buffer_size)
    return MixDataset(base, imgsz, params, transform=TrainTransform(imgsz, AUGMENT))


def loader_rate(dataset, workers: int, batches: int, batch: int = 16) -> float:
    """images/s of whole batches, after the first two (worker start-up)."""
    sampler = RandomSampler(dataset, replacement=True, num_samples=(batches + 2) * batch)
    loader = build_dataloader(dataset, batch, False, num_workers=workers, sampler=sampler, prefetch_factor=4)
    start = None
    for i, _ in enumerate(loader):
        if i == 1:
            start = time.perf_counter()
    return batches * batch / (time.perf_counter() - start)


def memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MiB summed over ``pid`` and its child processes (the loader's workers). PSS
    counts a page shared after the fork once in all, RSS once per process."""
    totals, todo = [0.0, 0.0], [pid]
    while todo:
        p = todo.pop()
        try:
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text().splitlines()
            for k, key in enumerate(("Rss:", "Pss:")):
                totals[k] += next(int(line.split()[1]) for line in rollup if line.startswith(key)) / 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue
    return totals[0], totals[1]


def memory_growth(dataset, workers: int, samples: int, batch: int = 16) -> tuple[tuple[float, float], ...]:
    """(RSS, PSS) MiB of the main process + workers after 200 samples and after ``samples``, in one
    long epoch."""
    sampler = RandomSampler(dataset, replacement=True, num_samples=samples + 4 * batch)
    loader = build_dataloader(dataset, batch, False, num_workers=workers, sampler=sampler)
    seen, early, late = 0, None, None
    for b in loader:
        seen += len(b["image_ids"])
        if early is None and seen >= 200:
            early = memory_mib(os.getpid())
        if seen >= samples:
            late = memory_mib(os.getpid())
            break
    return early, late


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=40, help="batches of 16 per loader measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-samples", type=int, default=2000)
    parser.add_argument("--train-steps", type=int, default=8)
    args = parser.parse_args()
    keep_freed_memory()  # as the trainer does on a CPU
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = generate_synthetic_coco(Path(tmp) / "shapes", num_train=300, num_val=1, image_size=640, seed=0)
        shapes = CocoDataset(data["train_ann"], data["train_images"])
        sets = [("shapes 640x640", shapes)]
        tiny_ann = SHARED / "data" / "tinycoco" / "annotations" / "instances_train2017.json"
        if tiny_ann.is_file():
            sets.append(("tinycoco (COCO JPEGs)", CocoDataset(tiny_ann, tiny_ann.parents[1] / "images" / "train2017")))
        for name, base in sets:
            for label, mosaic, buffer_size, workers in (
                ("Mosaic+MixUp+HSV+flip", True, 64, args.workers),
                ("Mosaic+MixUp+HSV+flip", True, 64, 0),
                ("Mosaic+MixUp+HSV+flip, no buffer (YOLOX)", True, 0, args.workers),
                ("HSV+flip only", False, 64, args.workers),
            ):
                rates = [
                    loader_rate(mixed(base, 640, mosaic, buffer_size), workers, args.batches)
                    for _ in range(args.repeats)
                ]
                rows.append((f"loader, {label}, {name}", 640, f"{workers} workers", statistics.median(rates)))
        # Images of many sizes (tinycoco's, where it is there) are the hard case for the heap.
        memory_set, memory_base = sets[-1]
        early, late = memory_growth(mixed(memory_base, 640), args.workers, args.memory_samples)
        nano_loader = build_dataloader(
            CocoDataset(data["train_ann"], data["train_images"], transform=TrainTransform(320)), 16, shuffle=True
        )
        steps = [
            step_speed("nano", 320, 16, nano_loader, args.train_steps, torch.device("cpu")) for _ in range(args.repeats)
        ]
        step_rate = statistics.median(steps)
        rows.append(("YOLOX-Nano train step (batch 16)", 320, f"{torch.get_num_threads()} threads", step_rate))

    print("| what | input | processes | images/s (median) |")
    print("|---|---|---|---|")
    for what, imgsz, procs, rate in rows:
        print(f"| {what} | {imgsz} | {procs} | {rate:.1f} |")
    print()
    loader_main = rows[0][3]
    print(f"Loader (Mosaic+MixUp, {args.workers} workers, 640) / Nano step (320): **{loader_main / step_rate:.1f}x**")
    print()
    print(f"| memory, main process + {args.workers} workers, {memory_set} | RSS MiB | PSS MiB |")
    print("|---|---|---|")
    print(f"| after 200 samples | {early[0]:.0f} | {early[1]:.0f} |")
    print(f"| after {args.memory_samples} samples | {late[0]:.0f} | {late[1]:.0f} |")
    rss, pss = (100 * (late[k] - early[k]) / early[k] for k in range(2))
    print(f"| growth | {rss:+.1f}% | {pss:+.1f}% |")


if __name__ == "__main__":
    main()
