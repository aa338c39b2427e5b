import ctypes
import ctypes.util

import pytest
import torch

from detector.engine import allocator
from detector.engine.allocator import keep_freed_memory


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
