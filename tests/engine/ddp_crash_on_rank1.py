"""tools/train.py with a fault injected into rank 1's second optimiser step; run under torchrun
by test_distributed.py (not a test module itself)."""

import importlib.util
import os
import sys
from pathlib import Path

from detector.engine.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]
original_step = Trainer.train_step


def failing_step(self, batches):
    if self.rank == 1 and self.iteration == 1:
        raise RuntimeError(f"injected fault on rank {os.environ['RANK']} at iteration {self.iteration}")
    return original_step(self, batches)


Trainer.train_step = failing_step
spec = importlib.util.spec_from_file_location("train_tool", REPO / "tools" / "train.py")
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)
sys.exit(tool.main())
