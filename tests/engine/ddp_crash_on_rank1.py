"""tools/train.py with a fault injected into rank 1's second optimiser step; run under torchrun
by test_distributed.py (not a test module itself)."""

import os
import runpy
from pathlib import Path

from detector.engine.step import TrainStep

REPO = Path(__file__).resolve().parents[2]
original_step = TrainStep.__call__


def failing_step(self, batches, iteration=0):
    if self.rank == 1 and iteration == 1:
        raise RuntimeError(f"injected fault on rank {os.environ['RANK']} at iteration {iteration}")
    return original_step(self, batches, iteration)


TrainStep.__call__ = failing_step
runpy.run_path(str(REPO / "tools" / "train.py"), run_name="__main__")  # exits as the tool does
