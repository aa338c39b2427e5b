"""tools/train.py keeping ``LEAK_BYTES`` of new memory per optimiser step, as a forgotten list
of tensors would; run by test_memory.py to show that its measure sees such a leak (not a
test module itself)."""

import os
import runpy
from pathlib import Path

import torch

from detector.engine.step import TrainStep

REPO = Path(__file__).resolve().parents[2]
LEAK_BYTES = int(os.environ["LEAK_BYTES"])
kept: list[torch.Tensor] = []
original_step = TrainStep.__call__


def leaking_step(self, batches, iteration=0):
    kept.append(torch.ones(LEAK_BYTES // 4))  # float32, every page written
    return original_step(self, batches, iteration)


TrainStep.__call__ = leaking_step
runpy.run_path(str(REPO / "tools" / "train.py"), run_name="__main__")  # exits as the tool does
