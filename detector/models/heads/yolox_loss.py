"""YOLOX training loss: SimOTA assignment, then IoU-aware classification, objectness,
box IoU (weighted 5.0) and optional L1 losses, each normalised by the number of positives."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from detector.assigners.simota import assign_simota
from detector.losses.iou import iou_loss, yolox_iou_loss
from detector.ops.boxes import cxcywh_to_xyxy, xyxy_to_cxcywh


class YOLOXLoss(nn.Module):
    """Loss of an anchor-free YOLOX head.

    ``iou_type`` is ``"iou"`` (YOLOX's 1 - IoU², its default), ``"giou"``, ``"diou"`` or
    ``"ciou"``. The L1 loss on raw box outputs is added when ``use_l1`` is set (YOLOX turns it
    on for the last, no-augmentation epochs).
    """

    def __init__(
        self,
        num_classes: int,
        iou_type: str = "iou",
        box_weight: float = 5.0,
        use_l1: bool = False,
        center_radius: float = 1.5,
    ) -> None:
        super().__init__()
        if iou_type not in ("iou", "giou", "diou", "ciou"):
            raise ValueError(f"iou_type must be one of iou, giou, diou, ciou, got '{iou_type}'")
        self.num_classes = num_classes
        self.iou_type = iou_type
        self.box_weight = box_weight
        self.use_l1 = use_l1
        self.center_radius = center_radius

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
        Returns ``loss`` (the weighted total) and its parts ``iou``, ``obj``, ``cls``, ``l1``
        and ``num_fg``.
        """
        if not torch.isfinite(flat_raw).all():
            # Non-finite outputs cannot be assigned; report NaN losses so that the trainer's
            # guard skips the step instead of the assigner failing on them.
            nan = flat_raw.sum() * float("nan")
            parts = dict.fromkeys(("iou", "obj", "cls", "l1"), nan.detach())
            return {"loss": nan, **parts, "num_fg": torch.tensor(0.0)}
        batch = flat_raw.shape[0]
        obj_logits = flat_raw[..., 4]
        cls_logits = flat_raw[..., 5:]
        obj_targets = torch.zeros_like(obj_logits)
        fg_masks, cls_targets, box_targets, l1_targets = [], [], [], []
        total_fg = 0
        image_index = targets[:, 0].long()
        for b in range(batch):
            gt = targets[image_index == b]
            if gt.shape[0] == 0:
                fg_masks.append(torch.zeros_like(obj_logits[b], dtype=torch.bool))
                continue
            gt_boxes = xyxy_to_cxcywh(gt[:, 2:6].float())
            gt_labels = gt[:, 1].long()
            with torch.no_grad():
                result = assign_simota(
                    gt_boxes,
                    gt_labels,
                    pred_boxes[b].detach().float(),
                    cls_logits[b].detach().float(),
                    obj_logits[b].detach().float(),
                    priors,
                    self.num_classes,
                    center_radius=self.center_radius,
                )
            fg = result.fg_mask
            fg_masks.append(fg)
            total_fg += int(result.num_fg)
            obj_targets[b, fg] = 1.0
            # IoU-aware classification target: the class one-hot scaled by the prediction's IoU.
            cls_targets.append(
                F.one_hot(result.matched_labels, self.num_classes).float() * result.matched_ious[:, None]
            )
            matched = gt_boxes[result.matched_gt_inds]
            box_targets.append(matched)
            if self.use_l1:
                fg_priors = priors[fg]
                stride = fg_priors[:, 2:3]
                xy = matched[:, :2] / stride - fg_priors[:, :2]
                wh = torch.log(matched[:, 2:4] / stride + 1e-8)
                l1_targets.append(torch.cat((xy, wh), dim=1))

        fg_mask = torch.stack(fg_masks)
        num_fg = max(total_fg, 1)
        zero = flat_raw.new_zeros(())  # the total stays connected to the graph through loss_obj
        loss_obj = F.binary_cross_entropy_with_logits(obj_logits, obj_targets, reduction="sum") / num_fg
        if cls_targets:
            loss_cls = (
                F.binary_cross_entropy_with_logits(cls_logits[fg_mask], torch.cat(cls_targets), reduction="sum")
                / num_fg
            )
            loss_iou = self.box_loss(pred_boxes[fg_mask], torch.cat(box_targets)).sum() / num_fg
        else:
            loss_cls = loss_iou = zero
        if self.use_l1 and l1_targets:
            loss_l1 = F.l1_loss(flat_raw[..., :4][fg_mask], torch.cat(l1_targets), reduction="sum") / num_fg
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
        }
