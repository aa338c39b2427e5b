"""Training throughput on this machine: images/s of full training steps (forward, YOLOX loss
with SimOTA, backward, SGD step, EMA) and of the data loader alone.

    python bench/train_speed.py [--steps 8] [--device cpu]

Prints a markdown table of medians. Never part of the test run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from detector import build_model, load_config
from detector.data.coco import CocoDataset
from detector.data.loader import build_dataloader
from detector.data.synthetic import generate_synthetic_coco
from detector.data.transforms import TrainTransform
from detector.engine.ema import ModelEMA
from detector.engine.optim import build_optimizer
from detector.utils.allocator import keep_freed_memory

REPO = Path(__file__).resolve().parents[1]
CASES = [("nano", 320, 16), ("tiny", 320, 16), ("s", 640, 16)]
AUGMENT = [
    {"type": "HorizontalFlip", "p": 0.5},
    {"type": "HueSaturationValue", "hue_shift_limit": 10, "sat_shift_limit": 30, "val_shift_limit": 20, "p": 0.5},
    {"type": "Affine", "scale": [0.75, 1.25], "translate_percent": [-0.1, 0.1], "p": 0.5},
]


def step_speed(name: str, imgsz: int, batch: int, loader, steps: int, device: torch.device) -> float:
    cfg = load_config(REPO / "configs" / "_base_" / "models" / f"yolox_{name}.yaml", ["model.head.num_classes=5"])
    model = build_model(cfg).to(device, memory_format=torch.channels_last).train()
    optimizer = build_optimizer(model, {"type": "SGD"}, lr=0.001)
    ema = ModelEMA(model)
    batches = [b for _, b in zip(range(steps + 2), loader, strict=False)]
    times = []
    for i, b in enumerate(batches):
        images = b["images"].to(device).float().contiguous(memory_format=torch.channels_last)
        targets = b["targets"].to(device)
        start = time.perf_counter()
        model(images, targets)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.update(model)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:  # the first steps allocate and tune kernels
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def loader_speed(dataset, batch: int, steps: int) -> float:
    loader = build_dataloader(dataset, batch, shuffle=True, num_workers=0)
    times, start = [], time.perf_counter()
    for i, _ in enumerate(loader):
        now = time.perf_counter()
        times.append(now - start)
        start = now
        if i == steps:
            break
    return batch / statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        keep_freed_memory()  # as the trainer does
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for size in sorted({c[1] for c in CASES}):
            data = generate_synthetic_coco(Path(tmp) / str(size), num_train=160, num_val=1, image_size=size, seed=0)
            dataset = CocoDataset(data["train_ann"], data["train_images"], transform=TrainTransform(size, AUGMENT))
            loader = build_dataloader(dataset, 16, shuffle=True, num_workers=0)
            rows.append(("data loader alone (1 process)", size, 16, loader_speed(dataset, 16, args.steps)))
            for name, imgsz, batch in CASES:
                if imgsz == size:
                    rows.append(
                        (
                            f"YOLOX-{name} train step",
                            imgsz,
                            batch,
                            step_speed(name, imgsz, batch, loader, args.steps, device),
                        )
                    )
    print(f"| what ({device}, {torch.get_num_threads()} threads) | input | batch | images/s (median) |")
    print("|---|---|---|---|")
    for what, imgsz, batch, speed in rows:
        print(f"| {what} | {imgsz} | {batch} | {speed:.1f} |")


if __name__ == "__main__":
    main()
