"""ATSS, Adaptive Training Sample Selection (Zhang et al., CVPR 2020).

For each gt: on every level take the ``topk`` priors whose centres are closest to the gt
centre; the IoU threshold is the mean plus the standard deviation of those candidates' IoUs
with the gt; candidates at or above it whose centres lie inside the gt are positives. A prior
that is positive for several gts goes to the one it overlaps most. The assignment uses only
geometry (prior boxes and gts), never the predictions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from detector.assigners.base import BACKGROUND, Assigner
from detector.ops.boxes import box_iou_cxcywh
from detector.ops.priors import prior_centers
from detector.registry import ASSIGNERS


def level_sizes(priors: Tensor) -> list[int]:
    """Number of priors per level: priors come level by level, each with its own stride."""
    return torch.unique_consecutive(priors[:, 2], return_counts=True)[1].tolist()


@ASSIGNERS.register()
class ATSSAssigner(Assigner):
    """ATSS (see the module docstring).

    ``anchor_scale``: a prior's box is the square of side ``anchor_scale * stride`` around its
    cell centre (anchor-free heads; 5 or 8 are the usual values), or, when None, the prior's own
    anchor ``(anchor_w, anchor_h)`` (anchor-based heads). ``center_eps``: how far, in pixels, a
    prior centre must lie inside the gt box on every side.
    """

    def __init__(self, topk: int = 9, anchor_scale: float | None = 5.0, center_eps: float = 0.01) -> None:
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        if anchor_scale is not None and anchor_scale <= 0:
            raise ValueError(f"anchor_scale must be positive or null, got {anchor_scale}")
        self.topk = topk
        self.anchor_scale = anchor_scale
        self.center_eps = center_eps

    def prior_boxes(self, priors: Tensor) -> Tensor:
        """``[P, 4]`` cx, cy, w, h input pixels of the priors' boxes."""
        centers = prior_centers(priors)
        sizes = priors[:, 3:5] if self.anchor_scale is None else (priors[:, 2:3] * self.anchor_scale).expand(-1, 2)
        return torch.cat((centers, sizes), dim=1)

    def match_image(
        self,
        priors: Tensor,
        pred_boxes: Tensor,
        cls_logits: Tensor,
        obj_logits: Tensor | None,
        gt_boxes: Tensor,
        gt_labels: Tensor,
    ) -> Tensor:
        boxes = self.prior_boxes(priors)
        centers = boxes[:, :2]
        ious = box_iou_cxcywh(gt_boxes, boxes)  # [G, P]
        distances = torch.cdist(gt_boxes[:, :2], centers)  # [G, P]

        candidates, start = [], 0
        for count in level_sizes(priors):
            nearest = distances[:, start : start + count].topk(min(self.topk, count), dim=1, largest=False).indices
            candidates.append(nearest + start)
            start += count
        candidates = torch.cat(candidates, dim=1)  # [G, K]
        candidate_ious = ious.gather(1, candidates)
        # One candidate has no spread: its own IoU is the threshold.
        spread = candidate_ious.std(dim=1) if candidates.shape[1] > 1 else torch.zeros_like(candidate_ious[:, 0])
        threshold = candidate_ious.mean(dim=1) + spread

        candidate_centers = centers[candidates]  # [G, K, 2]
        half = gt_boxes[:, None, 2:] / 2
        offset = candidate_centers - gt_boxes[:, None, :2]
        inside = (half - offset.abs()).amin(dim=-1) > self.center_eps
        positive = (candidate_ious >= threshold[:, None]) & inside

        # IoU of every (gt, prior) pair that is positive, -1 elsewhere; each prior takes the
        # gt it overlaps most among those it is positive for.
        positive_ious = torch.full_like(ious, -1.0)
        positive_ious.scatter_(1, candidates, torch.where(positive, candidate_ious, -1.0))
        best_iou, best_gt = positive_ious.max(dim=0)
        return torch.where(best_iou >= 0, best_gt, torch.full_like(best_gt, BACKGROUND))
