"""YOLOX decoupled head: a 1x1 stem per level, then separate classification and
regression towers; the regression tower also predicts objectness."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from detector.models.heads.yolox_loss import YOLOXLoss
from detector.models.layers import ConvBNAct, conv_block
from detector.ops.priors import decode_yolox_boxes, make_priors
from detector.registry import HEADS


@HEADS.register()
class YOLOXHead(nn.Module):
    """Anchor-free decoupled head (one prior per grid cell).

    Per level it outputs raw maps ``[B, 4 + 1 + C, H, W]``: box (tx, ty, tw, th),
    objectness logit, class logits. ``loss`` holds the keyword arguments of ``YOLOXLoss``
    (``iou_type``, ``box_weight``, ``use_l1``, ``center_radius``). Module names follow YOLOX (``stems``, ``cls_convs``,
    ``reg_convs``, ``cls_preds``, ``reg_preds``, ``obj_preds``).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: Sequence[int],
        feat_channels: int = 256,
        strides: Sequence[int] = (8, 16, 32),
        depthwise: bool = False,
        act: str = "silu",
        prior_prob: float = 0.01,
        loss: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if len(in_channels) != len(strides):
            raise ValueError(f"{len(in_channels)} input levels (in_channels) but {len(strides)} strides")
        self.num_classes = num_classes
        self.strides = list(strides)
        c = feat_channels

        def tower() -> nn.Sequential:
            return nn.Sequential(conv_block(c, c, 3, 1, depthwise, act), conv_block(c, c, 3, 1, depthwise, act))

        self.stems = nn.ModuleList(ConvBNAct(ci, c, 1, act=act) for ci in in_channels)
        self.cls_convs = nn.ModuleList(tower() for _ in strides)
        self.reg_convs = nn.ModuleList(tower() for _ in strides)
        self.cls_preds = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for _ in strides)
        self.reg_preds = nn.ModuleList(nn.Conv2d(c, 4, 1) for _ in strides)
        self.obj_preds = nn.ModuleList(nn.Conv2d(c, 1, 1) for _ in strides)
        self._init_prior_bias(prior_prob)
        self.criterion = YOLOXLoss(num_classes, **(loss or {}))
        self._priors_cache: tuple[tuple, torch.Tensor] | None = None

    def _init_prior_bias(self, prior_prob: float) -> None:
        # Start every score at prior_prob so early training is not swamped by negatives.
        bias = -math.log((1 - prior_prob) / prior_prob)
        for conv in (*self.cls_preds, *self.obj_preds):
            nn.init.constant_(conv.bias, bias)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Raw per-level maps ``[B, 5 + C, H, W]`` (box, objectness logit, class logits)."""
        outputs = []
        for level, x in enumerate(features):
            x = self.stems[level](x)
            cls_feat = self.cls_convs[level](x)
            reg_feat = self.reg_convs[level](x)
            outputs.append(
                torch.cat(
                    (self.reg_preds[level](reg_feat), self.obj_preds[level](reg_feat), self.cls_preds[level](cls_feat)),
                    dim=1,
                )
            )
        return outputs

    def priors(self, level_outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Priors ``[P, 5]`` for these outputs' map sizes (cached per size/device/dtype)."""
        sizes = tuple(tuple(o.shape[-2:]) for o in level_outputs)
        ref = level_outputs[0]
        key = (sizes, ref.device, ref.dtype)
        if self._priors_cache is None or self._priors_cache[0] != key:
            self._priors_cache = (key, make_priors(sizes, self.strides, device=ref.device, dtype=ref.dtype))
        return self._priors_cache[1]

    @staticmethod
    def flatten(level_outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Concatenate per-level maps into ``[B, P, 5 + C]`` in prior order."""
        return torch.cat([o.flatten(start_dim=2) for o in level_outputs], dim=2).permute(0, 2, 1)

    def predict(self, level_outputs: Sequence[torch.Tensor], decode: bool = True) -> torch.Tensor:
        """``[B, P, 5 + C]``: boxes (cx, cy, w, h input pixels when ``decode``, else raw
        tx, ty, tw, th), objectness and class probabilities (sigmoid applied)."""
        flat = self.flatten(level_outputs)
        boxes = decode_yolox_boxes(flat[..., :4], self.priors(level_outputs)) if decode else flat[..., :4]
        return torch.cat((boxes, flat[..., 4:].sigmoid()), dim=-1)

    def loss(self, level_outputs: Sequence[torch.Tensor], targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training losses for raw ``level_outputs`` and ``targets`` ``[M, 6]`` (batch index,
        label, x1, y1, x2, y2 input pixels); see ``YOLOXLoss``."""
        flat = self.flatten(level_outputs)
        priors = self.priors(level_outputs)
        return self.criterion(flat, decode_yolox_boxes(flat[..., :4], priors), priors, targets)
