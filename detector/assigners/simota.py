"""SimOTA label assignment (YOLOX, Ge et al. 2021): which priors are positives, and for which gt.

Per image: priors whose cell centre lies strictly inside a square of half-side
``center_radius * stride`` around some gt centre are candidates. For each (gt, candidate) pair,
cost = sum over classes of BCE(sqrt(sigmoid(cls) * sigmoid(obj)), one-hot gt class)
+ ``iou_weight`` * -log(IoU + 1e-8) + 1e6 when the candidate is outside that gt's square.
Each gt takes its k lowest-cost candidates with k = max(1, int(sum of its ``candidate_topk``
largest IoUs)); a prior taken by several gts keeps the gt with the lowest cost.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from detector.assigners.base import BACKGROUND, Assigner
from detector.ops.boxes import box_iou_cxcywh
from detector.ops.priors import prior_centers
from detector.registry import ASSIGNERS

# Cost added for pairs outside the gt's centre square: large enough that they are only taken
# when a gt has fewer candidates of its own than its dynamic k.
OUTSIDE_COST = 1e6


class SimOTAResult(NamedTuple):
    """Assignment of one image. ``F = num_fg`` positives, ordered by prior index.

    fg_mask: ``[P]`` bool, priors that got a gt. matched_gt_inds: ``[F]`` long, index of each
    positive's gt. matched_labels: ``[F]`` long, its gt class. matched_ious: ``[F]`` float32, IoU
    of the positive's predicted box with its gt. num_fg: number of positives.
    """

    fg_mask: Tensor
    matched_gt_inds: Tensor
    matched_labels: Tensor
    matched_ious: Tensor
    num_fg: int


def _empty_result(num_priors: int, device: torch.device) -> SimOTAResult:
    return SimOTAResult(
        fg_mask=torch.zeros(num_priors, dtype=torch.bool, device=device),
        matched_gt_inds=torch.zeros(0, dtype=torch.long, device=device),
        matched_labels=torch.zeros(0, dtype=torch.long, device=device),
        matched_ious=torch.zeros(0, dtype=torch.float32, device=device),
        num_fg=0,
    )


def center_prior_mask(gt_boxes: Tensor, priors: Tensor, center_radius: float = 1.5) -> Tensor:
    """``[G, P]`` bool: prior cell centre strictly inside the square of half-side
    ``center_radius * stride`` around each gt centre (gt cxcywh pixels, priors our ``[P, 5]`` layout)."""
    centers = prior_centers(priors)
    radius = priors[:, 2] * center_radius
    cx, cy = gt_boxes[:, 0:1], gt_boxes[:, 1:2]
    # Written as distances to each side (not |dx| < r) so that boundary cases round as in YOLOX.
    left = centers[:, 0] - (cx - radius)
    right = (cx + radius) - centers[:, 0]
    top = centers[:, 1] - (cy - radius)
    bottom = (cy + radius) - centers[:, 1]
    return (left > 0) & (right > 0) & (top > 0) & (bottom > 0)


@torch.no_grad()
def assign_simota(
    gt_boxes: Tensor,
    gt_labels: Tensor,
    pred_boxes: Tensor,
    cls_logits: Tensor,
    obj_logits: Tensor,
    priors: Tensor,
    num_classes: int,
    center_radius: float = 1.5,
    iou_weight: float = 3.0,
    candidate_topk: int = 10,
) -> SimOTAResult:
    """SimOTA assignment for one image (see the module docstring for the rule).

    gt_boxes ``[G, 4]`` cxcywh pixels; gt_labels ``[G]`` class indices; pred_boxes ``[P, 4]``
    decoded predictions, cxcywh pixels; cls_logits ``[P, C]`` and obj_logits ``[P]`` or
    ``[P, 1]`` logits; priors ``[P, 5]`` (grid_x, grid_y, stride, anchor_w, anchor_h).
    Runs in float32 with autocast off and without gradients. ``G == 0``, or no prior near any
    gt, gives no positives.
    """
    num_priors = priors.shape[0]
    device = pred_boxes.device
    if obj_logits.dim() == 2:
        obj_logits = obj_logits.squeeze(1)
    if pred_boxes.shape != (num_priors, 4) or obj_logits.shape != (num_priors,):
        raise ValueError(
            f"expected pred_boxes [{num_priors}, 4] and obj_logits [{num_priors}] for {num_priors} priors, "
            f"got {tuple(pred_boxes.shape)} and {tuple(obj_logits.shape)}"
        )
    if cls_logits.shape != (num_priors, num_classes):
        raise ValueError(f"expected cls_logits [{num_priors}, {num_classes}], got {tuple(cls_logits.shape)}")
    num_gt = gt_boxes.shape[0]
    if num_gt == 0:
        return _empty_result(num_priors, device)

    with torch.autocast(device_type=device.type, enabled=False):
        gt_boxes = gt_boxes.float()
        in_center = center_prior_mask(gt_boxes, priors.float(), center_radius)
        # Costs are computed only on the union of all gts' candidates, as in YOLOX: the IoU top-k
        # for the dynamic k and the cost top-k both range over this set.
        candidates = in_center.any(dim=0).nonzero().squeeze(1)
        num_candidates = candidates.numel()
        if num_candidates == 0:
            return _empty_result(num_priors, device)
        in_center = in_center[:, candidates]

        ious = box_iou_cxcywh(gt_boxes, pred_boxes[candidates].float())
        probs = (cls_logits[candidates].float().sigmoid() * obj_logits[candidates].float().sigmoid()[:, None]).sqrt()
        onehot = F.one_hot(gt_labels.long(), num_classes).float()
        cls_cost = F.binary_cross_entropy(
            probs[None].expand(num_gt, -1, -1), onehot[:, None].expand(-1, num_candidates, -1), reduction="none"
        ).sum(dim=-1)
        cost = cls_cost + iou_weight * -torch.log(ious + 1e-8) + OUTSIDE_COST * (~in_center)

        top_ious = ious.topk(min(candidate_topk, num_candidates), dim=1).values
        dynamic_k = top_ious.sum(dim=1).int().clamp(min=1)
        # One top-k at the largest k for all gts, then keep each gt's first k ranks.
        max_k = int(dynamic_k.max())
        lowest = cost.topk(max_k, dim=1, largest=False).indices
        keep = torch.arange(max_k, device=device)[None] < dynamic_k[:, None]
        matching = torch.zeros_like(cost, dtype=torch.bool)
        gt_rows = torch.arange(num_gt, device=device)[:, None].expand(-1, max_k)
        matching[gt_rows[keep], lowest[keep]] = True

        shared = matching.sum(dim=0) > 1
        if shared.any():
            shared_cols = shared.nonzero().squeeze(1)
            cheapest_gt = cost[:, shared_cols].argmin(dim=0)
            matching[:, shared_cols] = False
            matching[cheapest_gt, shared_cols] = True

        positive = matching.any(dim=0)
        positive_cols = positive.nonzero().squeeze(1)
        matched_gt_inds = matching[:, positive_cols].byte().argmax(dim=0)
        fg_mask = torch.zeros(num_priors, dtype=torch.bool, device=device)
        fg_mask[candidates[positive_cols]] = True
        return SimOTAResult(
            fg_mask=fg_mask,
            matched_gt_inds=matched_gt_inds,
            matched_labels=gt_labels.long()[matched_gt_inds],
            matched_ious=ious[matched_gt_inds, positive_cols],
            num_fg=int(positive_cols.numel()),
        )


@ASSIGNERS.register()
class SimOTAAssigner(Assigner):
    """SimOTA as an ``Assigner`` (``assign_simota`` per image), for heads with or without
    objectness: without it the classification probabilities alone enter the cost."""

    uses_predictions = True

    def __init__(self, center_radius: float = 1.5, iou_weight: float = 3.0, candidate_topk: int = 10) -> None:
        self.center_radius = center_radius
        self.iou_weight = iou_weight
        self.candidate_topk = candidate_topk

    def match_image(
        self,
        priors: Tensor,
        pred_boxes: Tensor,
        cls_logits: Tensor,
        obj_logits: Tensor | None,
        gt_boxes: Tensor,
        gt_labels: Tensor,
    ) -> Tensor:
        if obj_logits is None:
            # sigmoid(+inf) = 1: the cost then uses sqrt(class probability), as YOLOX without objectness.
            obj_logits = torch.full_like(pred_boxes[:, 0], float("inf"))
        result = assign_simota(
            gt_boxes,
            gt_labels,
            pred_boxes,
            cls_logits,
            obj_logits,
            priors,
            cls_logits.shape[-1],
            center_radius=self.center_radius,
            iou_weight=self.iou_weight,
            candidate_topk=self.candidate_topk,
        )
        gt_inds = torch.full_like(result.fg_mask, BACKGROUND, dtype=torch.long)
        gt_inds[result.fg_mask] = result.matched_gt_inds
        return gt_inds
