"""tools/train.py with NaNs injected on rank 1 only; run under torchrun by
test_numerical_faults.py (not a test module itself).

``NAN_FAULT`` says where: ``input`` (rank 1's images), ``loss`` (rank 1's model outputs become
infinite) or ``gradient`` (one of rank 1's parameter gradients becomes NaN before DDP's
all-reduce, with a finite loss). ``NAN_ITERATIONS`` is ``"1,3"`` (those iterations) or ``"1-"``
(from 1 on). ``NAN_OUT``: a folder where each rank saves its final weights."""

import os
import runpy
from pathlib import Path

import torch

from detector.engine.step import TrainStep
from detector.engine.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]
FAULT = os.environ["NAN_FAULT"]
WHEN = os.environ["NAN_ITERATIONS"]
original_step, original_train = TrainStep.__call__, Trainer.train


def faulty(iteration: int) -> bool:
    if WHEN.endswith("-"):
        return iteration >= int(WHEN[:-1])
    return iteration in {int(i) for i in WHEN.split(",")}


def step_with_fault(self, batches, iteration=0):
    if self.rank != 1 or not faulty(iteration):
        return original_step(self, batches, iteration)
    batches = [batches] if isinstance(batches, dict) else list(batches)
    if FAULT == "input":
        batches[0] = dict(batches[0], images=batches[0]["images"].float() * float("nan"))
        return original_step(self, batches, iteration)
    if FAULT == "loss":
        bias = self.model.head.obj_preds[0].bias
        saved = bias.detach().clone()
        with torch.no_grad():
            bias.fill_(float("inf"))
        try:
            return original_step(self, batches, iteration)
        finally:
            with torch.no_grad():
                bias.copy_(saved)
    if FAULT == "gradient":
        first = next(p for p in self.model.parameters() if p.requires_grad)
        hook = first.register_hook(lambda grad: grad * float("nan"))
        try:
            return original_step(self, batches, iteration)
        finally:
            hook.remove()
    raise ValueError(f"NAN_FAULT: {FAULT!r}, expected input, loss or gradient")


def train_and_save_weights(self):
    metrics = original_train(self)
    torch.save(self.model.state_dict(), Path(os.environ["NAN_OUT"]) / f"rank{self.rank}.pt")
    return metrics


TrainStep.__call__, Trainer.train = step_with_fault, train_and_save_weights
runpy.run_path(str(REPO / "tools" / "train.py"), run_name="__main__")  # exits as the tool does
