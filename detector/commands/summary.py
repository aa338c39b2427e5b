"""Print a model's parameter count and GFLOPs: ``detector summary CONFIG|CKPT [--imgsz 640]``.

A checkpoint (``.pt``) is summarised by its own config: a pruned one by its slim layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from detector import build_model, load_config
from detector.cli import run_tool
from detector.commands import add_overrides_argument
from detector.config import parse_overrides, set_by_path
from detector.errors import ConfigError
from detector.models.summary import count_flops, count_parameters
from detector.utils.checkpoint import load_checkpoint


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("config", help="YAML config with a model section, or a checkpoint (.pt) of this package")
    parser.add_argument("--imgsz", type=int, nargs="+", default=[640], help="size, or height width")
    add_overrides_argument(parser)
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    args = parser.parse_args(argv)
    if len(args.imgsz) > 2:
        parser.error("--imgsz takes one size or a height and a width")
    h, w = (args.imgsz * 2)[:2]

    def run() -> int:
        model = build_model(_model_config(args.config, args.set))
        flops = count_flops(model, (h, w))
        print("| config | input | parameters | GFLOPs |\n|---|---|---|---|")
        print(f"| {args.config} | {h}x{w} | {count_parameters(model):,} | {flops / 1e9:.3f} |")
        return 0

    return run_tool(run, args.debug)


def _model_config(source: str, overrides: list[str]) -> dict:
    """The config of a YAML file, packaged name or checkpoint (its stored config)."""
    if Path(source).suffix in (".pt", ".pth") and Path(source).is_file():
        cfg = load_checkpoint(source).get("config")
        if cfg is None:
            raise ConfigError(f"{source}: not a checkpoint of this package (no config); give its YAML config")
        for dotted, value in parse_overrides(overrides).items():
            set_by_path(cfg, dotted, value)
        return cfg
    return load_config(source, overrides)
