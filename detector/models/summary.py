"""Model size figures: parameter count and FLOPs of one forward pass."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from detector.utils.modes import eval_mode


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, imgsz: int | Sequence[int] = 640, batch: int = 1) -> int:
    """FLOPs (multiply and add counted separately) of one eval-mode forward pass at ``imgsz``.

    ``imgsz`` is an int (square) or (height, width). Counted by ``torch.utils.flop_counter``:
    convolutions and matrix products only, as thop does.
    """
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
    param = next(model.parameters())
    x = torch.zeros(batch, 3, h, w, device=param.device, dtype=param.dtype)
    with eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()
