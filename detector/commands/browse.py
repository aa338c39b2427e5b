"""Look at training samples exactly as the model receives them:
``detector browse CONFIG [--n 16] [--out FILE.png]``.

Builds the config's training set (Mosaic, MixUp and albumentations as configured), draws the
first N samples of epoch ``--epoch`` (shuffled and augmented as the trainer does with
``data.num_workers: 0``) with their boxes and class names, and writes one PNG grid.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2

from detector import load_config
from detector.cli import run_tool
from detector.commands import add_overrides_argument
from detector.config_sections import parse_config
from detector.data.loader import build_dataloader, reseed_dataset
from detector.data.mix_dataset import build_train_dataset
from detector.utils.fileio import atomic_write
from detector.utils.visualize import draw_batch_grid


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", help="training config (YAML)")
    parser.add_argument("--n", type=int, default=16, help="number of samples (default 16)")
    parser.add_argument("--out", default="runs/browse.png", help="PNG file to write (default runs/browse.png)")
    parser.add_argument("--epoch", type=int, default=0, help="epoch whose samples to draw, from 0 (default 0)")
    parser.add_argument("--no-aug", action="store_true", help="the last epochs' samples: augmentation off")
    add_overrides_argument(parser)
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    args = parser.parse_args(argv)

    def run() -> int:
        if args.n < 1:
            raise ValueError(f"--n: expected at least 1 sample, got {args.n}")
        if Path(args.out).suffix.lower() != ".png":
            raise ValueError(f"--out: expected a .png file, got {args.out}")
        cfg = parse_config(load_config(args.config, args.set))
        seed = cfg.train.seed
        dataset = build_train_dataset(cfg.data, augment=not args.no_aug, seed=seed)
        loader = build_dataloader(dataset, batch_size=min(args.n, len(dataset)), shuffle=True, seed=seed)
        # The trainer reseeds the shuffle and the augmentation from seed + epoch.
        loader.generator.manual_seed(seed + args.epoch)
        reseed_dataset(dataset, seed + args.epoch)
        batch = next(iter(loader))
        captions = [f"id {i}" for i in batch["image_ids"]]
        grid = draw_batch_grid(batch["images"].numpy(), batch["targets"].numpy(), dataset.class_names, captions)
        ok, encoded = cv2.imencode(".png", grid)
        if not ok:
            raise OSError(f"could not encode the grid as PNG for {args.out}")
        atomic_write(args.out, lambda f: f.write(encoded.tobytes()), binary=True)
        boxes = len(batch["targets"])
        print(f"wrote {args.out}: {len(captions)} samples, {boxes} boxes, {grid.shape[1]}x{grid.shape[0]} px")
        return 0

    return run_tool(run, debug=args.debug)
