"""torch.distributed for training and evaluation: process-group set-up from torchrun's
environment, rank-0-only side effects, object gathering, and SyncBatchNorm (PyTorch's on GPUs,
a gloo-capable subclass on CPUs, where PyTorch's refuses to run).

One process per device, started by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``); without those variables everything here
is the single-process no-op.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from detector.errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size`` processes, ``local_rank`` on its
    machine, and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, shows progress and writes files."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether the environment describes more than one process (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: torch.device, timeout_s: float = 1800.0) -> DistContext:
    """Join the process group described by torchrun's environment: NCCL when ``device`` is
    CUDA (each process then takes ``cuda:LOCAL_RANK``), gloo on CPU. Returns the single-process
    context when the environment has no ``WORLD_SIZE`` > 1. Idempotent."""
    if not launched_by_torchrun():
        return DistContext(device=device)
    try:
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except (KeyError, ValueError) as exc:
        raise ConfigError(
            f"distributed environment: RANK, WORLD_SIZE and LOCAL_RANK must be integers ({exc}); start with torchrun"
        ) from None
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {local_rank}: this machine has {torch.cuda.device_count()} GPUs; "
                "--nproc_per_node must not exceed it"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            timeout=datetime.timedelta(seconds=timeout_s),
            device_id=device if device.type == "cuda" else None,
        )
    return DistContext(rank, world_size, local_rank, device)


def shutdown_distributed() -> None:
    """Leave the process group (if this process joined one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the current process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (picklable objects)."""
    if world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any, dst: int = 0) -> list[Any] | None:
    """Every rank's ``obj``, in rank order, on rank ``dst``; None on the other ranks."""
    rank, world_size = world()
    if world_size == 1:
        return [obj]
    out: list[Any] | None = [None] * world_size if rank == dst else None
    dist.gather_object(obj, out, dst=dst)
    return out


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    world_size = world()[1]
    if world_size == 1:
        return [obj]
    out: list[Any] = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_module_state(module: nn.Module, src: int = 0) -> nn.Module:
    """Copy rank ``src``'s parameters and buffers into ``module`` on every rank (in place)."""
    if world()[1] > 1:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=src)
    return module


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over all ranks (in place; returned for chaining)."""
    if world()[1] > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks: the gradient of a sum over ranks is the sum of the
    gradients (torch.distributed.nn's version of this is deprecated)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return _AllReduceSum.apply(grad)


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch normalisation with statistics over all ranks, for CPU tensors (gloo): differentiable
    all-reduces of the sum and count, then of the centred sum of squares, so the variance is as
    exact as single-process BatchNorm's. Outside training or a process group it is BatchNorm.
    (Not a SyncBatchNorm subclass: DistributedDataParallel refuses those on CPU modules.)"""

    def _check_input_dim(self, input: torch.Tensor) -> None:  # noqa: A002 - nn.Module's name
        if input.dim() < 2:
            raise ValueError(f"CpuSyncBatchNorm: expected at least 2D input, got {input.dim()}D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - nn.Module's name
        if input.device.type != "cpu" or not (self.training and world()[1] > 1):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        count = torch.tensor([input.numel() / input.shape[1]], dtype=input.dtype)
        totals = _AllReduceSum.apply(torch.cat([input.sum(dims), count]))
        n = totals[-1]
        if n <= 1:
            raise ValueError("CpuSyncBatchNorm: expected more than 1 value per channel over all ranks when training")
        mean = totals[:-1] / n
        shape = [1, -1] + [1] * (input.dim() - 2)
        centred = input - mean.reshape(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims)) / n
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * (n / (n - 1)), momentum)
        out = centred * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        return out


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of ``model`` as a SyncBatchNorm (``torch.nn.SyncBatchNorm.convert_sync_batchnorm``);
    on CPU then as ``CpuSyncBatchNorm``. Same parameters, buffers and state-dict keys."""
    model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if device.type == "cpu":
        for module in model.modules():
            if type(module) is nn.SyncBatchNorm:
                module.__class__ = CpuSyncBatchNorm
    return model
