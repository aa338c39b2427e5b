"""The frozen teacher of knowledge distillation, and the layout checks between it and a student."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from detector.config import load_config
from detector.errors import CheckpointError, ConfigError
from detector.utils.modes import eval_mode


def load_teacher(ckpt: str, config: str | None = None, path: str = "distill.teacher") -> nn.Module:
    """The teacher from ``ckpt`` (a checkpoint of this package, or an official YOLOX one with its
    ``config``), frozen: eval mode, no gradients. On the CPU; the caller moves it."""
    from detector.inference import load_detector  # inference imports the engine's neighbours

    cfg = load_config(config) if config is not None else None
    try:
        model, _, _ = load_detector(ckpt, cfg)
    except (ConfigError, CheckpointError) as exc:
        raise type(exc)(f"{path}: {exc}") from None
    model.eval()
    model.requires_grad_(False)
    return model


def prior_layout(model: nn.Module) -> dict[str, Any]:
    """What must agree between teacher and student for output distillation: the head's strides,
    priors per cell, anchor sizes and classes."""
    head = model.head
    return {
        "strides": list(head.strides),
        "priors per cell": int(getattr(head, "num_anchors", 1)),
        "anchors": getattr(head, "anchors", None),
        "classes": int(head.num_classes),
    }


def check_output_layout(student: nn.Module, teacher: nn.Module, path: str) -> None:
    """ConfigError naming ``path`` when the two heads' prior layouts differ."""
    s, t = prior_layout(student), prior_layout(teacher)
    differ = [key for key in s if s[key] != t[key]]
    if differ:
        details = "; ".join(f"{key}: student {s[key]}, teacher {t[key]}" for key in differ)
        raise ConfigError(
            f"{path}: output distillation needs the teacher's prior layout ({details}); "
            "use a feature loss (ChannelWiseDistillation, NormalizedFeatureMSE) instead"
        )


def neck_channels(model: nn.Module) -> list[int]:
    """The channels of the neck's output maps, measured by a forward pass of a small zero image
    (a pruned model's maps are narrower than its architecture's nominal ``out_channels``)."""
    param = next(model.parameters())
    with eval_mode(model), torch.no_grad():  # no BatchNorm statistics updated by the probe
        maps = model.features(torch.zeros(1, 3, 64, 64, device=param.device, dtype=param.dtype))
    return [int(m.shape[1]) for m in maps]
