import ctypes
import ctypes.util

import pytest
import torch

from detector.utils import allocator
from detector.utils.allocator import keep_freed_memory, release_freed_memory


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def glibc_mallinfo2():
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("not glibc >= 2.33 (no mallinfo2)")
    libc.mallinfo2.restype = MallInfo2
    return libc.mallinfo2


def test_freed_tensor_memory_stays_in_the_heap():
    mallinfo2 = glibc_mallinfo2()
    assert keep_freed_memory() is True
    size = 100 * 1024 * 1024
    block = torch.empty(size // 4)
    assert mallinfo2().hblkhd < size  # served from the heap, not mapped on its own
    del block
    assert mallinfo2().fordblks >= size  # kept for the next step instead of unmapped


def test_refused_setting_reports_false(monkeypatch):
    class RefusingLibc:
        def mallopt(self, param, value):
            return 0

    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: RefusingLibc())
    assert keep_freed_memory() is False


def test_missing_c_library_reports_false(monkeypatch):
    def no_library(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(allocator.ctypes, "CDLL", no_library)
    assert keep_freed_memory() is False


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def test_release_freed_memory_gives_kept_memory_back():
    glibc_mallinfo2()  # skips where this is not glibc
    assert keep_freed_memory() is True
    size = 200 * 1024 * 1024
    block = torch.ones(size // 4)  # touched, so resident
    del block
    kept = rss_bytes()
    assert release_freed_memory() is True
    assert rss_bytes() < kept - size // 2


def test_release_without_malloc_trim_reports_false(monkeypatch):
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: object())
    assert release_freed_memory() is False
