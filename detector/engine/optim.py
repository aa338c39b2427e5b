"""Optimisers with weight decay on conv/linear weights only (not on BatchNorm or biases)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from detector.config_sections import OptimizerConfig
from detector.schema import parse_section


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: weights of convs/linears with ``weight_decay``; BN parameters and all
    biases without (decaying them only hurts: they carry scale and offset, not capacity)."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            is_norm = isinstance(module, nn.modules.batchnorm._NormBase | nn.GroupNorm | nn.LayerNorm)
            (no_decay if is_norm or name == "bias" else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: OptimizerConfig | Mapping[str, Any], lr: float) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) or AdamW from the ``optimizer`` config section, at ``lr``."""
    cfg = parse_section(OptimizerConfig, cfg, "optimizer")
    groups = parameter_groups(model, cfg.weight_decay)
    if cfg.type == "SGD":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov, foreach=True)
    return torch.optim.AdamW(groups, lr=lr, betas=cfg.betas, foreach=True)
