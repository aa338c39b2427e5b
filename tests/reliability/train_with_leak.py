"""tools/train.py keeping ``LEAK_BYTES`` of new memory per optimiser step, as a forgotten list
of tensors would; run by test_memory.py to show that its measure sees such a leak (not a
test module itself)."""

import os
import runpy
from pathlib import Path

import torch

from detector.engine.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]
LEAK_BYTES = int(os.environ["LEAK_BYTES"])
kept: list[torch.Tensor] = []
original_step = Trainer.train_step


def leaking_step(self, batches):
    kept.append(torch.ones(LEAK_BYTES // 4))  # float32, every page written
    return original_step(self, batches)


Trainer.train_step = leaking_step
runpy.run_path(str(REPO / "tools" / "train.py"), run_name="__main__")  # exits as the tool does
