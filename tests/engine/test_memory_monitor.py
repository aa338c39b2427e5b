"""The memory figures the trainer logs: this process's resident size, its children's
proportional sizes, and None where /proc cannot tell."""

import mmap
import subprocess
import sys

import pytest
import torch

from detector.engine import memory
from detector.engine.memory import MIB, MemoryMonitor, child_pids, proportional_bytes, resident_bytes

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")


def touched_block(size: int) -> mmap.mmap:
    """``size`` bytes of new anonymous memory, every page written. Not from malloc: after a
    training in this process (detector.utils.allocator: no trimming) it may hand out pages that
    are already resident."""
    block = mmap.mmap(-1, size)
    for offset in range(0, size, mmap.PAGESIZE):
        block[offset] = 1
    return block


@linux_only
def test_resident_size_follows_touched_memory():
    before = resident_bytes()
    block = touched_block(64 * MIB)
    grown = resident_bytes() - before
    block.close()
    assert 60 * MIB < grown < 72 * MIB


@linux_only
def test_children_are_found_and_their_proportional_size_counts_shared_pages_once():
    script = "import time; print('ready', flush=True); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"  # the interpreter is loaded, not still exec'ing
        assert child.pid in child_pids()
        size = proportional_bytes(child.pid)
        assert 1 * MIB < size <= resident_bytes(child.pid)  # a Python interpreter, shared libraries split
    finally:
        child.kill()
        child.wait()
    assert child.pid not in child_pids()
    assert proportional_bytes(child.pid) is None  # gone


@linux_only
def test_monitor_keeps_the_epoch_peak_and_starts_again_at_reset():
    monitor = MemoryMonitor(torch.device("cpu"), interval_s=3600)
    monitor.sample()
    first = monitor.peaks()["ram_mb"]
    block = touched_block(64 * MIB)
    monitor.sample()  # within the interval: not read again
    assert monitor.peaks()["ram_mb"] == first
    monitor.sample(force=True)
    assert monitor.peaks()["ram_mb"] > first + 60
    block.close()
    monitor.sample(force=True)
    assert monitor.peaks()["ram_mb"] > first + 60  # a peak stays for the epoch
    monitor.reset()
    assert monitor.peaks() == {"ram_mb": None, "workers_ram_mb": None, "gpu_mem_mb": None}


def test_without_proc_the_host_figures_are_none(monkeypatch, tmp_path):
    monkeypatch.setattr(memory, "PROC", tmp_path / "no-proc")
    assert resident_bytes() is None and proportional_bytes(1) is None and child_pids() == []
    monitor = MemoryMonitor(torch.device("cpu"))
    monitor.sample(force=True)
    assert monitor.peaks() == {"ram_mb": None, "workers_ram_mb": None, "gpu_mem_mb": None}
