"""YOLOX training loss: label assignment (SimOTA by default, any ``Assigner`` by config), then
IoU-aware classification, objectness, box IoU (weighted 5.0) and optional L1 losses, each
normalised by the number of positives."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from detector.assigners.base import Assigner, AssignResult, pad_targets
from detector.losses.iou import iou_loss, yolox_iou_loss
from detector.ops.boxes import cxcywh_to_xyxy
from detector.registry import ASSIGNERS, LOSSES

#: Where the losses' settings sit in a config: heads build their loss from ``model.head.loss``.
LOSS_PATH = "model.head.loss"


def build_assigner(cfg: Mapping[str, Any] | Assigner | None, path: str = f"{LOSS_PATH}.assigner") -> Assigner:
    """An ``Assigner`` from its config (SimOTA with YOLOX's settings when ``cfg`` is None)."""
    if isinstance(cfg, Assigner):
        return cfg
    return ASSIGNERS.build(cfg or {"type": "SimOTAAssigner"}, path)


def nan_losses(flat_raw: torch.Tensor) -> dict[str, torch.Tensor]:
    """The loss dict of a batch whose outputs are not finite: NaN parts, no positives.

    Non-finite outputs cannot be assigned; NaN losses make the trainer's guard skip the step
    instead of the assigner failing on them."""
    nan = flat_raw.sum() * float("nan")
    parts = dict.fromkeys(("iou", "obj", "cls", "l1"), nan.detach())
    return {"loss": nan, **parts, "num_fg": torch.tensor(0.0), "normalizer": torch.tensor(0.0)}


def build_cls_loss(cfg: Mapping[str, Any] | None, path: str = f"{LOSS_PATH}.cls_loss") -> nn.Module:
    """A classification loss from its config, summed (normalisation is the caller's)."""
    cfg = dict(cfg or {"type": "BCEWithLogitsLoss"})
    cfg["reduction"] = "sum"
    return LOSSES.build(cfg, path)


@LOSSES.register()
class YOLOXLoss(nn.Module):
    """Loss of an anchor-free YOLOX head.

    ``iou_type`` is ``"iou"`` (YOLOX's 1 - IoU², its default), ``"giou"``, ``"diou"`` or
    ``"ciou"``. The L1 loss on raw box outputs is added when ``use_l1`` is set (YOLOX turns it
    on for the last, no-augmentation epochs). ``assigner`` is an assigner config (default
    ``{type: SimOTAAssigner}``); ``cls_loss`` a classification loss config (default
    ``{type: BCEWithLogitsLoss}``, YOLOX's: positives only with the IoU as target; ``FocalLoss``,
    ``QualityFocalLoss`` and ``VarifocalLoss`` are summed over all priors).
    """

    def __init__(
        self,
        num_classes: int,
        iou_type: str = "iou",
        box_weight: float = 5.0,
        use_l1: bool = False,
        assigner: Mapping[str, Any] | Assigner | None = None,
        cls_loss: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if iou_type not in ("iou", "giou", "diou", "ciou"):
            raise ValueError(f"iou_type must be one of iou, giou, diou, ciou, got '{iou_type}'")
        self.num_classes = num_classes
        self.iou_type = iou_type
        self.box_weight = box_weight
        self.use_l1 = use_l1
        self.assigner = build_assigner(assigner)
        #: The ``AssignResult`` of the last forward pass (None before the first).
        self.last_assignment: AssignResult | None = None
        self.cls_loss = build_cls_loss(cls_loss)

    def box_loss(self, pred_cxcywh: torch.Tensor, target_cxcywh: torch.Tensor) -> torch.Tensor:
        if self.iou_type in ("iou", "giou"):
            return yolox_iou_loss(pred_cxcywh, target_cxcywh, kind=self.iou_type)
        return iou_loss(cxcywh_to_xyxy(pred_cxcywh), cxcywh_to_xyxy(target_cxcywh), kind=self.iou_type)

    def forward(
        self, flat_raw: torch.Tensor, pred_boxes: torch.Tensor, priors: torch.Tensor, targets: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Losses for one batch.

        flat_raw: ``[B, P, 5 + C]`` raw head outputs (tx, ty, tw, th, obj logit, class logits);
        pred_boxes: ``[B, P, 4]`` decoded cx, cy, w, h input pixels; priors: ``[P, 5]``;
        targets: ``[M, 6]`` (batch index, label, x1, y1, x2, y2 input pixels).
        Returns ``loss`` (the weighted total), its parts ``iou``, ``obj``, ``cls``, ``l1``,
        ``num_fg`` and ``normalizer`` (the positives count the parts were divided by, before its
        clamp at 1).
        """
        if not torch.isfinite(flat_raw).all():
            return nan_losses(flat_raw)
        obj_logits = flat_raw[..., 4]
        cls_logits = flat_raw[..., 5:]
        gt_boxes, gt_labels, gt_mask = pad_targets(targets, flat_raw.shape[0])
        result = self.assigner(
            priors, pred_boxes.detach(), cls_logits.detach(), obj_logits.detach(), gt_boxes, gt_labels, gt_mask
        )
        # Kept for the output distillation's box term, which distils at the student's positives.
        self.last_assignment = result
        fg = result.fg_mask
        valid = ~result.ignore_mask
        total_fg = result.num_fg
        num_fg = max(total_fg, 1)
        zero = flat_raw.new_zeros(())  # the total stays connected to the graph through loss_obj
        loss_obj = F.binary_cross_entropy_with_logits(obj_logits[valid], fg[valid].float(), reduction="sum") / num_fg

        cls_targets = F.one_hot(result.labels[fg], self.num_classes).float()
        if self.cls_loss.soft_targets:
            # IoU-aware classification target: the class one-hot scaled by the prediction's IoU.
            cls_targets = cls_targets * result.quality[fg][:, None]
        if self.cls_loss.dense:
            dense_targets = torch.zeros_like(cls_logits, dtype=torch.float32)
            dense_targets[fg] = cls_targets
            loss_cls = self.cls_loss(cls_logits[valid], dense_targets[valid]) / num_fg
        elif total_fg:
            loss_cls = self.cls_loss(cls_logits[fg], cls_targets) / num_fg
        else:
            loss_cls = zero

        if total_fg:
            box_targets = result.boxes[fg]
            loss_iou = self.box_loss(pred_boxes[fg], box_targets).sum() / num_fg
        else:
            loss_iou = zero
        if self.use_l1 and total_fg:
            fg_priors = priors[None].expand(fg.shape[0], -1, -1)[fg]
            stride = fg_priors[:, 2:3]
            xy = box_targets[:, :2] / stride - fg_priors[:, :2]
            wh = torch.log(box_targets[:, 2:4] / stride + 1e-8)
            loss_l1 = F.l1_loss(flat_raw[..., :4][fg], torch.cat((xy, wh), dim=1), reduction="sum") / num_fg
        else:
            loss_l1 = zero
        total = self.box_weight * loss_iou + loss_obj + loss_cls + loss_l1
        return {
            "loss": total,
            "iou": loss_iou.detach(),
            "obj": loss_obj.detach(),
            "cls": loss_cls.detach(),
            "l1": loss_l1.detach(),
            "num_fg": torch.tensor(float(total_fg)),
            # What every part was divided by (before the clamp at 1): the trainer sums the parts
            # back up to normalise over a whole distributed / accumulated step.
            "normalizer": torch.tensor(float(total_fg)),
        }
