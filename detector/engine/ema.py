"""Exponential moving average of model weights, with a warm-up of the decay."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


class ModelEMA:
    """Keeps ``ema = d * ema + (1 - d) * model`` after every optimiser step.

    The decay ramps up as ``d = decay * (1 - exp(-updates / tau))`` so that the average is
    not dominated by the random initial weights. Buffers (BN statistics) are averaged too.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998, tau: float = 2000.0, updates: int = 0) -> None:
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        self.decay = decay
        self.tau = tau
        self.updates = updates
        self._pair_cache: tuple[nn.Module, tuple[list[torch.Tensor], ...]] | None = None

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.tau))

    def _pairs(self, model: nn.Module) -> tuple[list[torch.Tensor], ...]:
        # The tensors of both models keep their identity (optimisers and load_state_dict write
        # in place), so the pairing is computed once per model.
        if self._pair_cache is None or self._pair_cache[0] is not model:
            model_state = model.state_dict(keep_vars=False)
            floats, float_src, others, other_src = [], [], [], []
            for name, ema_value in self.module.state_dict().items():
                is_float = ema_value.dtype.is_floating_point
                (floats if is_float else others).append(ema_value)
                (float_src if is_float else other_src).append(model_state[name])
            self._pair_cache = (model, (floats, float_src, others, other_src))
        return self._pair_cache[1]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        floats, float_src, others, other_src = self._pairs(model)
        # One fused call per list instead of two small kernels per tensor (hundreds of them).
        if floats:
            torch._foreach_lerp_(floats, float_src, 1 - self.current_decay())
        if others:
            torch._foreach_copy_(others, other_src)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay, "tau": self.tau}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self._pair_cache = None
        self.updates = int(state["updates"])
        self.decay = float(state["decay"])
        self.tau = float(state["tau"])
