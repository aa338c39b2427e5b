"""Loading official YOLOX checkpoints.

YOLOX nests the backbone inside its PAFPN (``backbone.backbone.*``) and names the PAFPN
``backbone.*``; here the backbone and neck are siblings. The mapping is a key rename only:
every other name and every tensor is the same.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn

_RENAMES = (("backbone.backbone.", "backbone."), ("backbone.", "neck."), ("head.", "head."))


def convert_yolox_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official YOLOX ``model`` state dict's keys to this package's layout."""
    converted = {}
    for key, value in state_dict.items():
        for old, new in _RENAMES:
            if key.startswith(old):
                converted[new + key[len(old) :]] = value
                break
        else:
            raise KeyError(f"unexpected key '{key}' in YOLOX state dict (expected backbone.* or head.*)")
    return converted


def load_yolox_weights(
    model: nn.Module, source: str | os.PathLike[str] | Mapping[str, torch.Tensor], strict: bool = True
) -> nn.Module:
    """Load official YOLOX weights into ``model``.

    ``source`` is a checkpoint path (``yolox_s.pth``: a dict with a ``model`` entry, or a
    bare state dict) or a state dict. Files are read with ``weights_only=True``.
    """
    state = source if isinstance(source, Mapping) else torch.load(source, map_location="cpu", weights_only=True)
    model.load_state_dict(yolox_state_dict(state), strict=strict)
    return model


def yolox_state_dict(checkpoint: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An official YOLOX checkpoint (a dict with a ``model`` entry) or bare state dict, renamed to
    this package's layout (``convert_yolox_state_dict``)."""
    if "model" in checkpoint and isinstance(checkpoint["model"], Mapping):
        checkpoint = checkpoint["model"]
    return convert_yolox_state_dict(checkpoint)
