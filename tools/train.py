"""Train a detector: ``python tools/train.py CONFIG [--set k=v ...] [--resume [CKPT]] [--device cpu|cuda|cuda:N]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from detector import load_config
from detector.cli import run_tool
from detector.engine.evaluator import format_metrics_table, format_per_class_table
from detector.engine.trainer import Trainer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", help="YAML config")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument(
        "--resume", nargs="?", const=True, default=None, help="continue from CKPT (default: the run's last.pt)"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    args = parser.parse_args(argv)

    def run() -> int:
        cfg = load_config(args.config, args.set)
        trainer = Trainer(
            cfg,
            device=args.device,
            resume=args.resume,
            progress=not args.no_progress,
            config_name=Path(args.config).stem,
        )
        print(f"run folder: {trainer.run_dir}")
        metrics = trainer.train()
        if metrics:
            print(format_metrics_table(metrics))
            print()
            print(format_per_class_table(metrics))
        print(f"weights: {trainer.weights_dir / 'last.pt'} (best: {trainer.weights_dir / 'best.pt'})")
        return 0

    return run_tool(run, args.debug)


if __name__ == "__main__":
    sys.exit(main())
