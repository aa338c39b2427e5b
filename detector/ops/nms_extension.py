"""Builds and loads the CUDA NMS extension (``csrc/nms.cpp`` + ``csrc/nms_kernel.cu``).

An ahead-of-time build (``DETECTOR_BUILD_CUDA=1 pip install -e .`` where CUDA is present) gives
``detector._nms_cuda``; otherwise the sources are compiled at first use with
``torch.utils.cpp_extension.load`` into a cache folder (``$DETECTOR_CACHE`` or
``~/.cache/detector``), which later processes reuse. When neither works (no nvcc, no compiler,
mismatched CUDA) ``load_nms_extension`` returns None once with a warning saying why, and NMS on
CUDA tensors falls back to torchvision's kernel.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from types import ModuleType

import torch

CSRC = Path(__file__).resolve().parent / "csrc"
SOURCES = (CSRC / "nms.cpp", CSRC / "nms_kernel.cu")
#: nvcc flags: no fused multiply-add, so that IoUs round as on the CPU (exact parity with
#: torchvision's CPU NMS at the threshold).
NVCC_FLAGS = ("-O3", "--fmad=false")


def cache_dir() -> Path:
    """Where JIT builds live: ``$DETECTOR_CACHE/torch_extensions`` or ``~/.cache/detector/torch_extensions``."""
    root = Path(os.environ.get("DETECTOR_CACHE", Path.home() / ".cache" / "detector"))
    return root / "torch_extensions"


@functools.cache
def load_nms_extension(verbose: bool = False) -> ModuleType | None:
    """The compiled extension with ``nms_sorted(boxes, labels, iou_threshold)``, or None (warned once)."""
    try:
        from detector import _nms_cuda  # type: ignore[attr-defined]  # the ahead-of-time build

        return _nms_cuda
    except ImportError:
        pass
    try:
        from torch.utils.cpp_extension import load

        build = cache_dir() / f"nms_torch{torch.__version__.replace('+', '_')}"
        build.mkdir(parents=True, exist_ok=True)
        return load(
            name="detector_nms",
            sources=[str(s) for s in SOURCES],
            extra_cflags=["-O3"],
            extra_cuda_cflags=list(NVCC_FLAGS),
            build_directory=str(build),
            verbose=verbose,
        )
    except Exception as exc:  # compiler missing, CUDA mismatch, ...: all mean "use torchvision"
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        warnings.warn(
            f"detector: the CUDA NMS kernel could not be built ({reason}); using torchvision's CUDA NMS",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
