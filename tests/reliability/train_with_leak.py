"""tools/train.py keeping ``LEAK_BYTES`` of new memory per optimiser step, as a forgotten list
of tensors would; run by test_memory.py to show that its measure sees such a leak (not a
test module itself)."""

import importlib.util
import os
import sys
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
spec = importlib.util.spec_from_file_location("train_tool", REPO / "tools" / "train.py")
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)
sys.exit(tool.main())
