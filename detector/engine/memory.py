"""Memory of a training run: the main process, its data loader workers and the GPU.

Read from Linux's ``/proc`` (no dependency); elsewhere the host figures are None. A worker is
forked from the main process and shares its pages until either writes them, so the workers'
figure is their proportional set size (each shared page split among the processes sharing it),
which adds up without counting the main process's memory again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

MIB = 1024 * 1024
#: Per-epoch peaks in MiB (metrics.csv): main process, its loader workers, the GPU.
MEMORY_KEYS = ("ram_mb", "workers_ram_mb", "gpu_mem_mb")
PROC = Path("/proc")


def resident_bytes(pid: int | str = "self") -> int | None:
    """Resident set size of process ``pid`` in bytes (None where /proc cannot tell)."""
    try:
        pages = int((PROC / str(pid) / "statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def proportional_bytes(pid: int | str) -> int | None:
    """Proportional set size of process ``pid`` in bytes; the resident size where the kernel
    has no ``smaps_rollup``; None when the process is gone."""
    try:
        for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return resident_bytes(pid)


def child_pids() -> list[int]:
    """Process ids of this process's children (the data loader workers, among others)."""
    pids: list[int] = []
    try:
        tasks = list((PROC / "self" / "task").iterdir())
    except OSError:
        return pids
    for task in tasks:
        try:
            pids.extend(int(pid) for pid in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return pids


class MemoryMonitor:
    """The peaks of one epoch, in MiB: ``ram_mb`` (main process resident), ``workers_ram_mb``
    (children's proportional sizes summed, at the sample where that sum was largest) and
    ``gpu_mem_mb`` (CUDA memory reserved by PyTorch's allocator on ``device``).

    ``sample`` reads /proc at most every ``interval_s`` seconds (a worker's proportional size
    costs the kernel a walk over its pages), ``sample(force=True)`` always."""

    def __init__(self, device: torch.device, interval_s: float = 1.0) -> None:
        self.device = device
        self.interval_s = interval_s
        self.reset()

    def reset(self) -> None:
        """Start a new epoch's peaks."""
        self.ram: int | None = None
        self.workers: int | None = None
        self.last_sample = -float("inf")
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def sample(self, force: bool = False) -> None:
        """Read the current sizes and keep the peaks."""
        now = time.monotonic()
        if not force and now - self.last_sample < self.interval_s:
            return
        self.last_sample = now
        ram = resident_bytes()
        if ram is not None:
            self.ram = max(self.ram or 0, ram)
        sizes = [size for size in map(proportional_bytes, child_pids()) if size is not None]
        if sizes:
            self.workers = max(self.workers or 0, sum(sizes))

    def peaks(self) -> dict[str, float | None]:
        """``{"ram_mb", "workers_ram_mb", "gpu_mem_mb"}`` of the epoch so far (None: unknown)."""
        gpu = torch.cuda.max_memory_reserved(self.device) if self.device.type == "cuda" else None
        return {
            "ram_mb": None if self.ram is None else self.ram / MIB,
            "workers_ram_mb": None if self.workers is None else self.workers / MIB,
            "gpu_mem_mb": None if gpu is None else gpu / MIB,
        }
