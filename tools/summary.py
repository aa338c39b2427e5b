"""Print a model's parameter count and GFLOPs: ``python tools/summary.py CONFIG [--imgsz 640]``."""

from __future__ import annotations

import argparse
import sys

from detector import build_model, load_config
from detector.models.summary import count_flops, count_parameters
from detector.registry import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", help="YAML config with a model section")
    parser.add_argument("--imgsz", type=int, nargs="+", default=[640], help="size, or height width")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args(argv)
    if len(args.imgsz) > 2:
        parser.error("--imgsz takes one size or a height and a width")
    h, w = (args.imgsz * 2)[:2]
    try:
        model = build_model(load_config(args.config, args.set))
        flops = count_flops(model, (h, w))
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("| config | input | parameters | GFLOPs |\n|---|---|---|---|")
    print(f"| {args.config} | {h}x{w} | {count_parameters(model):,} | {flops / 1e9:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
