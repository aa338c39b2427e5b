"""Train a detector: ``detector train CONFIG [--set k=v ...] [--resume [CKPT]] [--device cpu|cuda|cuda:N]``.

CONFIG is a YAML file or a packaged config's name (``yolox_nano_shapes``). Several processes
(GPUs, or CPU processes with gloo) on one or more machines (``tools/train.py`` in place of
``-m detector train`` works the same)::

    torchrun --nproc_per_node N -m detector train CONFIG
    torchrun --nnodes M --nproc_per_node N --rdzv_backend c10d --rdzv_endpoint HOST:PORT -m detector train CONFIG

``data.batch_size`` is the global batch of one optimiser step in every case (see README).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from torch.distributed.elastic.multiprocessing.errors import record

from detector import load_config
from detector.cli import run_tool
from detector.commands import add_overrides_argument
from detector.engine.distributed import shutdown_distributed
from detector.engine.evaluator import format_metrics_table, format_per_class_table
from detector.engine.trainer import Trainer


@record  # under torchrun, a rank's uncaught error and traceback reach the launcher's summary
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", help="YAML config, or a packaged config's name")
    add_overrides_argument(parser)
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
        if trainer.is_main:
            print(
                f"run folder: {trainer.run_dir}"
                + (f" ({trainer.world_size} processes)" if trainer.world_size > 1 else "")
            )
        metrics = trainer.train()
        if trainer.is_main:
            if metrics:
                print(format_metrics_table(metrics))
                print()
                print(format_per_class_table(metrics))
            print(f"weights: {trainer.weights_dir / 'last.pt'} (best: {trainer.weights_dir / 'best.pt'})")
        # Only after a clean finish: a failed rank just exits, and torchrun stops the others.
        shutdown_distributed()
        return 0

    return run_tool(run, args.debug)
