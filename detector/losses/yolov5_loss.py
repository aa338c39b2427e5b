"""YOLOv5 training loss for anchor-based heads: CIoU box loss on positives, objectness with the
(clamped, detached) CIoU as target balanced per level, and BCE classification on positives.

Gains follow YOLOv5's defaults (hyp.scratch-low): box 0.05, obj 1.0, cls 0.5, scaled as YOLOv5
scales them (3 / levels; cls by classes / 80; obj by (input size / 640)^2). YOLOv5 multiplies
the total by the batch size and always steps at a nominal batch of 64 (accumulating smaller
batches); this trainer instead scales the learning rate linearly with the batch, so the total
is multiplied by ``loss_scale`` = 64 at every batch size, which gives YOLOv5's step per image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from detector.assigners.atss import level_sizes
from detector.assigners.base import Assigner, AssignResult, pad_targets
from detector.losses.yolox_loss import build_assigner, build_cls_loss, nan_losses
from detector.ops.boxes import aligned_iou, cxcywh_to_xyxy
from detector.registry import LOSSES


@LOSSES.register()
class YOLOv5Loss(nn.Module):
    """Loss of an anchor-based head (see the module docstring).

    ``assigner``: an assigner config (default ``{type: YOLOv5Assigner}``); ``cls_loss``: a
    classification loss config (default BCE on positives with hard targets; dense losses such
    as ``FocalLoss`` are summed over all priors instead); ``balance``: objectness weight per
    level (YOLOv5's 4.0, 1.0, 0.4 for three levels); ``iou_type``: the box loss's IoU variant.
    """

    def __init__(
        self,
        num_classes: int,
        assigner: Mapping[str, Any] | Assigner | None = None,
        cls_loss: Mapping[str, Any] | None = None,
        box_weight: float = 0.05,
        obj_weight: float = 1.0,
        cls_weight: float = 0.5,
        balance: Sequence[float] = (4.0, 1.0, 0.4),
        iou_type: str = "ciou",
        label_smoothing: float = 0.0,
        loss_scale: float = 64.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.assigner = build_assigner(assigner or {"type": "YOLOv5Assigner"})
        #: The ``AssignResult`` of the last forward pass (None before the first).
        self.last_assignment: AssignResult | None = None
        self.cls_loss = build_cls_loss(cls_loss or {"type": "BCEWithLogitsLoss", "soft_targets": False})
        self.box_weight = box_weight
        self.obj_weight = obj_weight
        self.cls_weight = cls_weight
        self.balance = [float(b) for b in balance]
        self.iou_type = iou_type
        self.label_smoothing = label_smoothing
        self.loss_scale = loss_scale

    def forward(
        self, flat_raw: torch.Tensor, pred_boxes: torch.Tensor, priors: torch.Tensor, targets: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Losses for one batch; arguments and returned keys as ``YOLOXLoss`` (``iou`` is the box
        loss, ``l1`` always 0)."""
        if not torch.isfinite(flat_raw).all():
            return nan_losses(flat_raw)
        batch = flat_raw.shape[0]
        obj_logits = flat_raw[..., 4]
        cls_logits = flat_raw[..., 5:]
        gt_boxes, gt_labels, gt_mask = pad_targets(targets, batch)
        result = self.assigner(
            priors, pred_boxes.detach(), cls_logits.detach(), obj_logits.detach(), gt_boxes, gt_labels, gt_mask
        )
        # Kept for the output distillation's box term, which distils at the student's positives.
        self.last_assignment = result
        fg = result.fg_mask
        valid = ~result.ignore_mask
        num_fg = result.num_fg
        sizes = level_sizes(priors)
        if len(sizes) != len(self.balance):
            raise ValueError(f"model.head.loss.balance has {len(self.balance)} weights for {len(sizes)} levels")
        levels_scale = 3.0 / len(sizes)
        input_size = float(priors[: sizes[0], 0].max() + 1) * float(priors[0, 2])
        zero = flat_raw.new_zeros(())

        obj_targets = torch.zeros_like(obj_logits, dtype=torch.float32)
        if num_fg:
            ciou = aligned_iou(cxcywh_to_xyxy(pred_boxes[fg]), cxcywh_to_xyxy(result.boxes[fg]), kind=self.iou_type)
            loss_box = (1.0 - ciou).mean()
            obj_targets[fg] = ciou.detach().clamp(min=0).float()
        else:
            loss_box = zero

        loss_obj, start = zero, 0
        for weight, count in zip(self.balance, sizes, strict=True):
            level_logits = obj_logits[:, start : start + count]
            level_targets = obj_targets[:, start : start + count]
            level_valid = valid[:, start : start + count]
            loss_obj = loss_obj + weight * F.binary_cross_entropy_with_logits(
                level_logits[level_valid], level_targets[level_valid]
            )
            start += count

        positive_value, negative_value = 1.0 - 0.5 * self.label_smoothing, 0.5 * self.label_smoothing
        hard = torch.full((num_fg, self.num_classes), negative_value, device=flat_raw.device)
        hard[torch.arange(num_fg, device=flat_raw.device), result.labels[fg]] = positive_value
        if self.cls_loss.soft_targets and num_fg:
            hard = hard * result.quality[fg][:, None]
        if self.cls_loss.dense:
            dense_targets = torch.zeros_like(cls_logits, dtype=torch.float32)
            dense_targets[fg] = hard
            loss_cls = self.cls_loss(cls_logits[valid], dense_targets[valid]) / max(num_fg, 1)
        elif num_fg:
            # YOLOv5 averages its class BCE over positives x classes.
            loss_cls = self.cls_loss(cls_logits[fg], hard) / hard.numel()
        else:
            loss_cls = zero

        box = self.box_weight * levels_scale * loss_box
        obj = self.obj_weight * levels_scale * (input_size / 640) ** 2 * loss_obj
        cls = self.cls_weight * levels_scale * self.num_classes / 80 * loss_cls
        return {
            "loss": (box + obj + cls) * self.loss_scale,
            "iou": box.detach(),
            "obj": obj.detach(),
            "cls": cls.detach(),
            "l1": zero.detach(),
            "num_fg": torch.tensor(float(num_fg)),
            # The parts are batch means (YOLOv5's own normalisation): weigh batches by their images.
            "normalizer": torch.tensor(float(batch)),
        }
