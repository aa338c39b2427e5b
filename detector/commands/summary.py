"""Print a model's parameter count and GFLOPs: ``detector summary CONFIG [--imgsz 640]``."""

from __future__ import annotations

import argparse

from detector import build_model, load_config
from detector.cli import run_tool
from detector.commands import add_overrides_argument
from detector.models.summary import count_flops, count_parameters


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("config", help="YAML config with a model section")
    parser.add_argument("--imgsz", type=int, nargs="+", default=[640], help="size, or height width")
    add_overrides_argument(parser)
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    args = parser.parse_args(argv)
    if len(args.imgsz) > 2:
        parser.error("--imgsz takes one size or a height and a width")
    h, w = (args.imgsz * 2)[:2]

    def run() -> int:
        model = build_model(load_config(args.config, args.set))
        flops = count_flops(model, (h, w))
        print("| config | input | parameters | GFLOPs |\n|---|---|---|---|")
        print(f"| {args.config} | {h}x{w} | {count_parameters(model):,} | {flops / 1e9:.3f} |")
        return 0

    return run_tool(run, args.debug)
