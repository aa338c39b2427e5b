"""YOLOX decoupled head: a 1x1 stem per level, then separate classification and
regression towers; the regression tower also predicts objectness."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from detector.losses import yolov5_loss, yolox_loss  # noqa: F401  (register the losses)
from detector.losses.yolox_loss import LOSS_PATH
from detector.models.layers import ConvBNAct, conv_block
from detector.ops.priors import decode_yolov5_boxes, decode_yolox_boxes, make_priors
from detector.registry import HEADS, LOSSES


def validate_anchors(anchors: Sequence[Sequence[Sequence[float]]] | None, num_levels: int) -> list | None:
    """``anchors`` as a list per level of (w, h) pixel pairs, the same count on every level."""
    if anchors is None:
        return None
    anchors = [[tuple(float(v) for v in pair) for pair in level] for level in anchors]
    if len(anchors) != num_levels:
        raise ValueError(f"model.head.anchors: {len(anchors)} levels given for {num_levels} strides")
    counts = {len(level) for level in anchors}
    if len(counts) != 1 or 0 in counts or any(len(pair) != 2 or min(pair) <= 0 for lv in anchors for pair in lv):
        raise ValueError("model.head.anchors: expected the same number of positive (w, h) pairs on every level")
    return anchors


@HEADS.register()
class YOLOXHead(nn.Module):
    """Decoupled YOLO head: anchor-free (YOLOX, one prior per grid cell) by default, or
    anchor-based when ``anchors`` gives per level a list of (w, h) anchor sizes in input pixels
    (YOLOv5's defaults: ``detector.assigners.yolov5.YOLOV5_ANCHORS``).

    Per level it outputs raw maps ``[B, A * (4 + 1 + C), H, W]``, for each of the ``A`` anchors
    (1 when anchor-free): box (tx, ty, tw, th), objectness logit, class logits. Boxes decode
    as YOLOX (``exp`` sizes in strides) when anchor-free and as YOLOv5 (sigmoid offsets,
    ``(2 sigmoid)^2 x anchor`` sizes) when anchor-based. ``loss`` holds the loss config:
    ``type`` (``YOLOXLoss`` by default when anchor-free, ``YOLOv5Loss`` when anchor-based) and
    its keyword arguments, ``assigner`` and ``cls_loss`` included. Module names follow YOLOX
    (``stems``, ``cls_convs``, ``reg_convs``, ``cls_preds``, ``reg_preds``, ``obj_preds``).
    """

    #: The module lists whose convs predict boxes and objectness. INT8 keeps them in float:
    #: 256 levels per tensor for box offsets cost localisation (measured on Tiny: PTQ mAP50-95
    #: 0.582 with them quantised, 0.617 without, fp32 0.620; mAP50 unchanged).
    BOX_PREDICTIONS = ("reg_preds", "obj_preds", "box_obj_preds")

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
        anchors: Sequence[Sequence[Sequence[float]]] | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if len(in_channels) != len(strides):
            raise ValueError(f"{len(in_channels)} input levels (in_channels) but {len(strides)} strides")
        self.num_classes = num_classes
        self.strides = list(strides)
        self.anchors = validate_anchors(anchors, len(self.strides))
        self.num_anchors = len(self.anchors[0]) if self.anchors is not None else 1
        a = self.num_anchors
        c = feat_channels

        def tower() -> nn.Sequential:
            return nn.Sequential(conv_block(c, c, 3, 1, depthwise, act), conv_block(c, c, 3, 1, depthwise, act))

        self.stems = nn.ModuleList(ConvBNAct(ci, c, 1, act=act) for ci in in_channels)
        self.cls_convs = nn.ModuleList(tower() for _ in strides)
        self.reg_convs = nn.ModuleList(tower() for _ in strides)
        self.cls_preds = nn.ModuleList(nn.Conv2d(c, a * num_classes, 1) for _ in strides)
        self.reg_preds = nn.ModuleList(nn.Conv2d(c, a * 4, 1) for _ in strides)
        self.obj_preds = nn.ModuleList(nn.Conv2d(c, a, 1) for _ in strides)
        #: Box and objectness predictions in one conv per level, after merge_box_obj_preds().
        self.box_obj_preds: nn.ModuleList | None = None
        self._init_prior_bias(prior_prob)
        loss_cfg = dict(loss or {})
        loss_type = loss_cfg.pop("type", "YOLOXLoss" if self.anchors is None else "YOLOv5Loss")
        self.criterion = LOSSES.build({"type": loss_type, **loss_cfg}, LOSS_PATH, num_classes=num_classes)
        self._priors_cache: tuple[tuple, torch.Tensor] | None = None

    def _init_prior_bias(self, prior_prob: float) -> None:
        # Start every score at prior_prob so early training is not swamped by negatives.
        bias = -math.log((1 - prior_prob) / prior_prob)
        for conv in (*self.cls_preds, *self.obj_preds):
            nn.init.constant_(conv.bias, bias)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Raw per-level maps ``[B, A * (5 + C), H, W]`` (per anchor: box, objectness logit,
        class logits)."""
        outputs = []
        a = self.num_anchors
        for level, x in enumerate(features):
            x = self.stems[level](x)
            cls_feat = self.cls_convs[level](x)
            reg_feat = self.reg_convs[level](x)
            cls_out = self.cls_preds[level](cls_feat)
            if self.box_obj_preds is None:
                parts = (self.reg_preds[level](reg_feat), self.obj_preds[level](reg_feat), cls_out)
            else:
                box_obj = self.box_obj_preds[level](reg_feat)
                parts = (box_obj, cls_out) if a == 1 else (*box_obj.split((4 * a, a), dim=1), cls_out)
            if a > 1:
                # Group the channels by anchor: [B, A, 5 + C, H, W] -> [B, A * (5 + C), H, W].
                b, _, h, w = x.shape
                parts = tuple(p.reshape(b, a, -1, h, w) for p in parts)
                outputs.append(torch.cat(parts, dim=2).reshape(b, -1, h, w))
            else:
                outputs.append(torch.cat(parts, dim=1))
        return outputs

    def prediction_convs(self) -> list[nn.Conv2d]:
        """The 1x1 convs whose outputs are the predictions (their widths are fixed by the classes,
        anchors and box coordinates; pruning leaves their outputs alone)."""
        merged = self.box_obj_preds is not None
        lists = (self.cls_preds, self.box_obj_preds) if merged else (self.cls_preds, self.reg_preds, self.obj_preds)
        return [conv for convs in lists for conv in convs]

    def merge_box_obj_preds(self) -> bool:
        """Merge each level's box and objectness 1x1 convs, which read the same regression
        features, into one conv with their output channels stacked (in place, for inference: the
        module names change). Same outputs, one conv and one read of the features fewer per
        level. Returns False when already merged."""
        if self.box_obj_preds is not None:
            return False
        merged = nn.ModuleList()
        for reg, obj in zip(self.reg_preds, self.obj_preds, strict=True):
            conv = nn.Conv2d(reg.in_channels, reg.out_channels + obj.out_channels, 1).to(reg.weight)
            with torch.no_grad():
                conv.weight.copy_(torch.cat((reg.weight, obj.weight)))
                conv.bias.copy_(torch.cat((reg.bias, obj.bias)))
            conv.requires_grad_(reg.weight.requires_grad)
            merged.append(conv)
        del self.reg_preds, self.obj_preds
        self.box_obj_preds = merged
        return True

    def priors(self, level_outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Priors ``[P, 5]`` for these outputs' map sizes (cached per size/device/dtype)."""
        sizes = tuple(tuple(o.shape[-2:]) for o in level_outputs)
        ref = level_outputs[0]
        key = (sizes, ref.device, ref.dtype)
        if self._priors_cache is None or self._priors_cache[0] != key:
            priors = make_priors(sizes, self.strides, anchors=self.anchors, device=ref.device, dtype=ref.dtype)
            self._priors_cache = (key, priors)
        return self._priors_cache[1]

    def flatten(self, level_outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Concatenate per-level maps into ``[B, P, 5 + C]`` in prior order (level, anchor, y, x)."""
        flat = []
        for o in level_outputs:
            b, _, h, w = o.shape
            # Permuting channels last costs nothing for channels-last maps and keeps their
            # gradients channels-last; NCHW gradients would make every backward op reformat.
            o = o.permute(0, 2, 3, 1).reshape(b, h, w, self.num_anchors, -1)
            flat.append(o.permute(0, 3, 1, 2, 4).reshape(b, self.num_anchors * h * w, -1))
        return torch.cat(flat, dim=1)

    def decode(self, box_raw: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
        """Raw box outputs ``[B, P, 4]`` -> cx, cy, w, h input pixels (YOLOX or YOLOv5 form)."""
        if self.anchors is None:
            return decode_yolox_boxes(box_raw, priors)
        return decode_yolov5_boxes(box_raw, priors)

    def predict(self, level_outputs: Sequence[torch.Tensor], decode: bool = True) -> torch.Tensor:
        """``[B, P, 5 + C]``: boxes (cx, cy, w, h input pixels when ``decode``, else raw
        tx, ty, tw, th), objectness and class probabilities (sigmoid applied)."""
        flat = self.flatten(level_outputs)
        boxes = self.decode(flat[..., :4], self.priors(level_outputs)) if decode else flat[..., :4]
        return torch.cat((boxes, flat[..., 4:].sigmoid()), dim=-1)

    def loss(self, level_outputs: Sequence[torch.Tensor], targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training losses for raw ``level_outputs`` and ``targets`` ``[M, 6]`` (batch index,
        label, x1, y1, x2, y2 input pixels); see ``YOLOXLoss``."""
        flat = self.flatten(level_outputs)
        priors = self.priors(level_outputs)
        return self.criterion(flat, self.decode(flat[..., :4], priors), priors, targets)
