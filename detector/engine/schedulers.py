"""Learning-rate schedule: quadratic warm-up, cosine decay to a floor, flat floor at the end."""

from __future__ import annotations

import math

from torch.optim import Optimizer


class WarmupCosineLR:
    """YOLOX-style schedule over iterations.

    * warm-up (``warmup_iters``): ``lr = warmup_lr + (base_lr - warmup_lr) * (it / warmup_iters)**2``;
    * cosine from ``base_lr`` down to ``base_lr * min_lr_ratio`` until ``total_iters - flat_iters``;
    * then flat at the floor (YOLOX's no-augmentation epochs).

    Stateless apart from the iteration count: ``step(it)`` sets the lr of every param group
    (scaled by the group's ``lr_scale`` when present) and returns the base lr.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        base_lr: float,
        total_iters: int,
        warmup_iters: int = 0,
        warmup_lr: float = 0.0,
        min_lr_ratio: float = 0.05,
        flat_iters: int = 0,
    ) -> None:
        if total_iters <= 0:
            raise ValueError(f"total_iters must be positive, got {total_iters}")
        self.optimizer = optimizer
        self.base_lr = base_lr
        self.total_iters = total_iters
        self.warmup_iters = min(warmup_iters, total_iters)
        self.warmup_lr = warmup_lr
        self.min_lr = base_lr * min_lr_ratio
        self.flat_iters = min(flat_iters, total_iters - self.warmup_iters)

    def lr_at(self, it: int) -> float:
        if it < self.warmup_iters:
            return self.warmup_lr + (self.base_lr - self.warmup_lr) * (it / self.warmup_iters) ** 2
        cosine_iters = self.total_iters - self.warmup_iters - self.flat_iters
        progress = it - self.warmup_iters
        if progress >= cosine_iters:
            return self.min_lr
        return self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * progress / cosine_iters))

    def step(self, it: int) -> float:
        lr = self.lr_at(it)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr
