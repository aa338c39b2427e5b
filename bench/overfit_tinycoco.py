"""Memorisation check: YOLOX-Nano from scratch at 320 on the 32 tinycoco train2017 images for
200 epochs at batch 8 (``configs/yolox_nano_tinycoco.yaml``), then pycocotools mAP on the same
images. A pipeline that cannot memorise 32 images has a bug in its assigner, loss or
augmentation.

    python bench/overfit_tinycoco.py [--epochs 200] [--device cpu] [--set KEY=VALUE ...]

Prints a markdown table (time, images/s, mAP50-95, mAP50). Never part of the test run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from detector import load_config
from detector.engine.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "yolox_nano_tinycoco.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--run-dir", default=None, help="keep the run folder here (default: a temporary one)")
    args = parser.parse_args()
    overrides = [f"train.epochs={args.epochs}", f"train.eval_interval={args.epochs}", *args.set]
    cfg = load_config(CONFIG, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, device=args.device, run_dir=args.run_dir or tmp, progress=True)
        start = time.perf_counter()
        metrics = trainer.train()
        elapsed = time.perf_counter() - start
        speeds = [row["images_per_s"] for row in trainer.history]
    images = args.epochs * len(trainer.train_set)
    print(f"| YOLOX-Nano from scratch, tinycoco train ({args.device}, {torch.get_num_threads()} threads) | value |")
    print("|---|---|")
    setting = f"batch {trainer.batch_size}, {cfg['data']['imgsz']} px"
    print(f"| epochs x images | {args.epochs} x {len(trainer.train_set)} ({setting}) |")
    print(f"| wall time (training + final evaluation) | {elapsed / 60:.1f} min |")
    print(f"| training images/s (median of epochs) | {statistics.median(speeds):.1f} |")
    print(f"| images seen | {images} |")
    print(f"| mAP50-95 (pycocotools, same 32 images) | {metrics['mAP50_95']:.3f} |")
    print(f"| mAP50 | {metrics['mAP50']:.3f} |")


if __name__ == "__main__":
    main()
