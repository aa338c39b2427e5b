"""Generate the synthetic shapes dataset (COCO format):
``detector make-synthetic --out data/synthetic --train 500 --val 100 --size 320 --seed 0``."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from detector.cli import run_tool
from detector.data.synthetic import generate_synthetic_coco
from detector.utils.fileio import atomic_write_text


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--out", default="data/synthetic", help="output folder (default: data/synthetic)")
    parser.add_argument("--train", type=int, default=500, help="number of training images")
    parser.add_argument("--val", type=int, default=100, help="number of validation images")
    parser.add_argument("--size", type=int, nargs="+", default=[320], help="image size, or height width")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-objects", type=int, default=8, help="most shapes per image")
    parser.add_argument("--min-size", type=float, default=8.0, help="smallest shape side in pixels (default 8)")
    parser.add_argument("--format", choices=["jpg", "png"], default="jpg", help="image file format")
    parser.add_argument("--force", action="store_true", help="regenerate even if the output exists")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    args = parser.parse_args(argv)
    if len(args.size) > 2:
        parser.error("--size takes one size or a height and a width")
    size = args.size[0] if len(args.size) == 1 else (args.size[0], args.size[1])

    def run() -> int:
        out = Path(args.out)
        anns = [out / "annotations" / f"instances_{split}.json" for split in ("train", "val")]
        settings = {k: getattr(args, k) for k in ("train", "val", "size", "seed", "max_objects", "min_size", "format")}
        settings_file = out / "generator.json"
        if all(a.exists() for a in anns) and not args.force:
            previous = json.loads(settings_file.read_text()) if settings_file.is_file() else None
            if previous == settings:
                print(f"{out} already holds this dataset ({settings_file}); skipping (--force regenerates)")
                return 0
            print(f"{out} holds a dataset made with other settings ({previous}); regenerating")
        # Stale images of a larger earlier run would sit beside the new ones; only our folders go.
        for split in ("train", "val"):
            if (out / "images" / split).is_dir():
                shutil.rmtree(out / "images" / split)
        start = time.perf_counter()
        paths = generate_synthetic_coco(
            out,
            args.train,
            args.val,
            size,
            seed=args.seed,
            max_objects=args.max_objects,
            min_size=args.min_size,
            image_format=args.format,
        )
        elapsed = time.perf_counter() - start
        # Written last: a generation cut short leaves no settings file and is redone next time.
        atomic_write_text(settings_file, json.dumps(settings))
        print(f"wrote {args.train} train + {args.val} val images in {elapsed:.1f} s")
        for key in ("train_images", "train_ann", "val_images", "val_ann"):
            print(f"  {key}: {paths[key]}")
        return 0

    return run_tool(run, args.debug)
