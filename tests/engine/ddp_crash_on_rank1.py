"""tools/train.py with a fault injected into rank 1's second optimiser step; run under torchrun
by test_distributed.py (not a test module itself)."""

import os
import runpy
from pathlib import Path

from detector.engine.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]
original_step = Trainer.train_step


def failing_step(self, batches):
    if self.rank == 1 and self.iteration == 1:
        raise RuntimeError(f"injected fault on rank {os.environ['RANK']} at iteration {self.iteration}")
    return original_step(self, batches)


Trainer.train_step = failing_step
runpy.run_path(str(REPO / "tools" / "train.py"), run_name="__main__")  # exits as the tool does
