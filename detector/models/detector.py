"""One-stage detector = backbone + neck + head, and ``build_model`` from a config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from detector.compress.layout import apply_channel_layout
from detector.errors import ConfigError
from detector.models.layers import fuse_model
from detector.models.rep import fold_rep_convs
from detector.registry import BACKBONES, DETECTORS, HEADS, NECKS, check_arguments

#: Input height and width must be multiples of the coarsest stride.
SIZE_DIVISOR = 32


@DETECTORS.register()
class Detector(nn.Module):
    """Backbone -> neck -> head.

    ``model(x)`` with ``x`` a float ``[B, 3, H, W]`` batch (H, W multiples of 32):

    * with ``targets`` ``[M, 6]`` (batch index, label, x1, y1, x2, y2 input pixels): the
      training losses, a dict with the total under ``loss`` (see the head's ``loss``);
    * training mode: the head's raw per-level maps ``[B, 5 + C, H_l, W_l]``;
    * eval mode: decoded predictions before NMS ``[B, P, 4 + 1 + C]`` = cx, cy, w, h in input
      pixels, objectness and class probabilities (YOLOX's layout); ``decode=False`` leaves
      the box channels as raw (tx, ty, tw, th).

    ``channel_layout`` (a pruned model's, written by ``detector prune``): the widths of the convs
    and BatchNorms that differ from the architecture's, ``{dotted name: [in, out] or [features]}``
    (``detector.compress.layout``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        head: nn.Module,
        channel_layout: dict[str, list[int]] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head
        if channel_layout:
            apply_channel_layout(self, channel_layout)

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The neck's output maps (strides 8, 16, 32)."""
        if x.ndim != 4 or x.shape[-2] % SIZE_DIVISOR or x.shape[-1] % SIZE_DIVISOR:
            raise ValueError(
                f"input must be [B, C, H, W] with H and W multiples of {SIZE_DIVISOR}, got {list(x.shape)}"
            )
        return self.neck(self.backbone(x))

    def forward(
        self, x: torch.Tensor, targets: torch.Tensor | None = None, decode: bool = True
    ) -> torch.Tensor | list[torch.Tensor] | dict[str, torch.Tensor]:
        level_outputs = self.head(self.features(x))
        if targets is not None:
            return self.head.loss(level_outputs, targets)
        if self.training:
            return level_outputs
        return self.head.predict(level_outputs, decode=decode)

    def fuse(self, batchnorm: bool = True) -> Detector:
        """Prepare for inference, in place: re-parameterised blocks folded into single 3x3 convs,
        BatchNorm folded into the preceding convs (unless not ``batchnorm``: quantisation-aware
        training folds it on the fly), Focus's space-to-depth into the stem conv, and the head's
        sibling 1x1 convs merged (``merge_box_obj_preds``); returns self. The fused model computes
        the same outputs (up to float rounding) and is for inference only."""
        fold_rep_convs(self)
        fuse_model(self, batchnorm)
        merge = getattr(self.head, "merge_box_obj_preds", None)
        if merge is not None:
            merge()
        return self


def _build_part(registry, cfg: Mapping[str, Any], path: str, in_channels: list[int] | None) -> nn.Module:
    if in_channels is not None:
        given = cfg.get("in_channels") if isinstance(cfg, Mapping) else None
        if given is not None and list(given) != list(in_channels):
            raise ConfigError(f"{path}.in_channels: {list(given)} does not match the previous part's {in_channels}")
        return registry.build(cfg, path, in_channels=in_channels)
    return registry.build(cfg, path)


#: More parameters than this is a config mistake (YOLOX-X has 99 M), refused before allocating.
MAX_PARAMETERS = 2_000_000_000


def build_model(cfg: Mapping[str, Any]) -> nn.Module:
    """Build a detector from a full config (with a ``model`` section) or the model section.

    The neck's and head's ``in_channels`` default to the previous part's ``out_channels``. The
    model is first built on the ``meta`` device (no memory) and refused with a ``ConfigError``
    when it would have more than ``MAX_PARAMETERS`` parameters (channel counts gone wrong).
    """
    check_model_config(cfg)
    return _build_model(cfg)


def check_model_config(cfg: Mapping[str, Any]) -> None:
    """Check a model config without allocating anything: build it on the ``meta`` device
    (registry signature checks, channel arithmetic) and refuse more than ``MAX_PARAMETERS``."""
    with torch.device("meta"):
        probe = _build_model(cfg)
    count = sum(p.numel() for p in probe.parameters())
    if count > MAX_PARAMETERS:
        raise ConfigError(
            f"model: {count / 1e6:,.0f} M parameters, more than {MAX_PARAMETERS / 1e6:,.0f} M "
            "(YOLOX-X has 99 M); check the width, channels and num_classes settings"
        )


def _build_model(cfg: Mapping[str, Any]) -> nn.Module:
    model_cfg = cfg.get("model", cfg)
    path = "model"
    if not isinstance(model_cfg, Mapping):
        raise ConfigError(f"{path}: expected a mapping, got {type(model_cfg).__name__}")
    for part in ("backbone", "neck", "head"):
        if part not in model_cfg:
            raise ConfigError(f"{path}.{part}: missing; a detector needs a backbone, a neck and a head")
    backbone = _build_part(BACKBONES, model_cfg["backbone"], f"{path}.backbone", None)
    neck = _build_part(NECKS, model_cfg["neck"], f"{path}.neck", list(backbone.out_channels))
    head = _build_part(HEADS, model_cfg["head"], f"{path}.head", list(neck.out_channels))
    detector_cls = DETECTORS.get(model_cfg.get("type", "Detector"), f"{path}.type")
    extra = {k: v for k, v in model_cfg.items() if k not in ("type", "backbone", "neck", "head")}
    check_arguments(detector_cls, {"backbone": backbone, "neck": neck, "head": head, **extra}, path)
    try:
        return detector_cls(backbone=backbone, neck=neck, head=head, **extra)
    except ValueError as exc:
        raise ConfigError(f"{path}.channel_layout: {exc}") from None
