"""The interface every label assigner implements.

An assigner sees the priors of a batch (cell, stride and optional anchor size per prior), the
decoded predictions and the padded ground truth, and says for every prior which gt it learns
from. Heads and losses consume only ``AssignResult``, so any head trains with any assigner.

Ground truth is passed padded: ``gt_boxes [B, G, 4]`` cx, cy, w, h input pixels,
``gt_labels [B, G]`` class indices and ``gt_mask [B, G]`` marking the real rows, which come
first in every image (``pad_targets`` builds these from the loader's ``[M, 6]`` targets).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from detector.ops.boxes import aligned_iou_cxcywh, xyxy_to_cxcywh

#: ``AssignResult.gt_inds`` value of a background prior.
BACKGROUND = -1
#: ``AssignResult.gt_inds`` value of a prior that takes part in no loss term (none of the
#: built-in assigners produces it; the losses honour it).
IGNORE = -2


class AssignResult(NamedTuple):
    """Per-prior assignment of a batch of ``B`` images with ``P`` priors each.

    gt_inds: ``[B, P]`` long, index of the matched gt among that image's gts, ``BACKGROUND``
    or ``IGNORE``. labels: ``[B, P]`` long, class of the matched gt, -1 elsewhere.
    boxes: ``[B, P, 4]`` float32, matched gt box cx, cy, w, h input pixels, 0 elsewhere.
    quality: ``[B, P]`` float32, IoU of the prior's decoded prediction with its gt (the soft
    target of IoU-aware losses), 0 elsewhere.
    """

    gt_inds: Tensor
    labels: Tensor
    boxes: Tensor
    quality: Tensor

    @property
    def fg_mask(self) -> Tensor:
        """``[B, P]`` bool: priors matched to a gt."""
        return self.gt_inds >= 0

    @property
    def ignore_mask(self) -> Tensor:
        """``[B, P]`` bool: priors excluded from every loss term."""
        return self.gt_inds == IGNORE

    @property
    def num_fg(self) -> int:
        return int(self.fg_mask.sum())


def pad_targets(targets: Tensor, batch_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Loader targets ``[M, 6]`` (image index, label, x1, y1, x2, y2 pixels) to padded
    ``gt_boxes [B, G, 4]`` cxcywh, ``gt_labels [B, G]`` long and ``gt_mask [B, G]`` bool,
    ``G`` = the largest count in one image (at least 1 so that shapes stay non-empty)."""
    device = targets.device
    image_index = targets[:, 0].long()
    counts = torch.bincount(image_index, minlength=batch_size) if targets.numel() else None
    max_gt = max(1, int(counts.max())) if counts is not None else 1
    gt_boxes = torch.zeros(batch_size, max_gt, 4, device=device)
    gt_labels = torch.full((batch_size, max_gt), -1, dtype=torch.long, device=device)
    gt_mask = torch.zeros(batch_size, max_gt, dtype=torch.bool, device=device)
    if counts is None:
        return gt_boxes, gt_labels, gt_mask
    # Rank of each target inside its image, keeping the loader's order.
    order = torch.argsort(image_index, stable=True)
    sorted_images = image_index[order]
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(targets.shape[0], device=device) - starts[sorted_images]
    rows = targets[order]
    gt_boxes[sorted_images, rank] = xyxy_to_cxcywh(rows[:, 2:6].float())
    gt_labels[sorted_images, rank] = rows[:, 1].long()
    gt_mask[sorted_images, rank] = True
    return gt_boxes, gt_labels, gt_mask


def build_assign_result(gt_inds: Tensor, gt_boxes: Tensor, gt_labels: Tensor, pred_boxes: Tensor) -> AssignResult:
    """Fill labels, target boxes and IoU quality from ``gt_inds [B, P]`` and the padded gts."""
    fg = gt_inds >= 0
    gather = gt_inds.clamp(min=0)
    labels = torch.where(fg, torch.gather(gt_labels, 1, gather), torch.full_like(gt_inds, -1))
    boxes = torch.gather(gt_boxes.float(), 1, gather[..., None].expand(-1, -1, 4)) * fg[..., None]
    quality = aligned_iou_cxcywh(pred_boxes.detach().float(), boxes) * fg
    return AssignResult(gt_inds=gt_inds, labels=labels, boxes=boxes, quality=quality)


class Assigner:
    """Base class of label assigners: subclasses implement ``match_image`` (one image) or
    override ``match`` (a whole batch at once where that pays)."""

    #: Whether the assignment reads the predictions (dynamic assigners) or only the geometry.
    uses_predictions: bool = False

    @torch.no_grad()
    def __call__(
        self,
        priors: Tensor,
        pred_boxes: Tensor,
        cls_logits: Tensor,
        obj_logits: Tensor | None,
        gt_boxes: Tensor,
        gt_labels: Tensor,
        gt_mask: Tensor,
    ) -> AssignResult:
        """Assign a batch.

        priors ``[P, 5]`` (grid_x, grid_y, stride, anchor_w, anchor_h); pred_boxes ``[B, P, 4]``
        decoded cx, cy, w, h input pixels; cls_logits ``[B, P, C]``; obj_logits ``[B, P]`` or
        None for heads without objectness; gt as described in the module docstring.
        Runs without gradients, in float32 with autocast off.
        """
        batch, num_priors = pred_boxes.shape[:2]
        if priors.shape[0] != num_priors:
            raise ValueError(f"{priors.shape[0]} priors but predictions for {num_priors}")
        if gt_boxes.shape[:2] != gt_labels.shape or gt_mask.shape != gt_labels.shape or gt_boxes.shape[0] != batch:
            raise ValueError(
                f"gt_boxes {tuple(gt_boxes.shape)}, gt_labels {tuple(gt_labels.shape)} and gt_mask "
                f"{tuple(gt_mask.shape)} must be [B, G, 4], [B, G], [B, G] with B = {batch}"
            )
        with torch.autocast(device_type=pred_boxes.device.type, enabled=False):
            gt_boxes = gt_boxes.float()
            gt_inds = self.match(
                priors.float(), pred_boxes.float(), cls_logits, obj_logits, gt_boxes, gt_labels, gt_mask
            )
            return build_assign_result(gt_inds, gt_boxes, gt_labels, pred_boxes)

    def match(
        self,
        priors: Tensor,
        pred_boxes: Tensor,
        cls_logits: Tensor,
        obj_logits: Tensor | None,
        gt_boxes: Tensor,
        gt_labels: Tensor,
        gt_mask: Tensor,
    ) -> Tensor:
        """``[B, P]`` long gt index per prior (or ``BACKGROUND`` / ``IGNORE``); by default one
        ``match_image`` call per image with gts."""
        batch, num_priors = pred_boxes.shape[:2]
        gt_inds = torch.full((batch, num_priors), BACKGROUND, dtype=torch.long, device=pred_boxes.device)
        counts = gt_mask.sum(dim=1).tolist()
        for b, count in enumerate(counts):
            if count == 0:
                continue
            gt_inds[b] = self.match_image(
                priors,
                pred_boxes[b],
                cls_logits[b],
                None if obj_logits is None else obj_logits[b],
                gt_boxes[b, :count],
                gt_labels[b, :count],
            )
        return gt_inds

    def match_image(
        self,
        priors: Tensor,
        pred_boxes: Tensor,
        cls_logits: Tensor,
        obj_logits: Tensor | None,
        gt_boxes: Tensor,
        gt_labels: Tensor,
    ) -> Tensor:
        """``[P]`` long gt index per prior for one image with ``G >= 1`` gts ``[G, 4]`` cxcywh."""
        raise NotImplementedError(f"{type(self).__name__} implements neither match nor match_image")

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({settings})"
