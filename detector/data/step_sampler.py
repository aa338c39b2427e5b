"""Which images each process loads for each micro-batch of a distributed, accumulated step."""

from __future__ import annotations

from collections.abc import Iterator, Sized

from torch.utils.data import DistributedSampler, Sampler


class StepBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size`` indices for process ``rank`` of ``world_size`` that accumulates
    ``accumulate`` micro-batches per optimiser step.

    Micro-batch j of every step comes from PyTorch's ``DistributedSampler`` for the virtual rank
    ``rank + world_size * j`` of ``world_size * accumulate``: all of them share one permutation
    per epoch (``seed + epoch``) and each takes every (world_size x accumulate)-th index of it. So
    a step sees the same images, split into the same micro-batches, whether it runs on W
    processes accumulating A micro-batches or on W x A processes: accumulation is exactly "more
    devices" (BatchNorm statistics included), and the global batch of step s is always the s-th
    slice of the permutation. Steps that the padded index streams cannot fill are dropped; a
    set smaller than one step gives one partial step.
    """

    def __init__(
        self, dataset: Sized, batch_size: int, rank: int = 0, world_size: int = 1, accumulate: int = 1, seed: int = 0
    ) -> None:
        if batch_size < 1 or accumulate < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"StepBatchSampler: batch_size {batch_size}, accumulate {accumulate}, rank {rank} of {world_size}"
            )
        self.batch_size = batch_size
        self.accumulate = accumulate
        self.samplers = [
            DistributedSampler(
                dataset, num_replicas=world_size * accumulate, rank=rank + world_size * j, shuffle=True, seed=seed
            )
            for j in range(accumulate)
        ]

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose permutation to use (as ``DistributedSampler.set_epoch``)."""
        for sampler in self.samplers:
            sampler.set_epoch(epoch)

    @property
    def steps(self) -> int:
        """Optimiser steps per epoch."""
        per_stream = len(self.samplers[0])
        return per_stream // self.batch_size if per_stream >= self.batch_size else min(per_stream, 1)

    def __len__(self) -> int:
        return self.steps * self.accumulate

    def __iter__(self) -> Iterator[list[int]]:
        streams = [list(sampler) for sampler in self.samplers]
        for step in range(self.steps):
            for stream in streams:
                yield stream[step * self.batch_size : (step + 1) * self.batch_size]
