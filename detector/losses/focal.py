"""Classification losses on logits: sigmoid focal loss and binary cross-entropy."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from detector.losses.iou import REDUCTIONS, reduce_loss
from detector.registry import LOSSES


def sigmoid_focal_loss(
    logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "none"
) -> Tensor:
    """Focal loss of RetinaNet (Lin et al., 2017) on logits, element-wise over any shape.

    ``targets`` has the shape of ``logits`` with values in [0, 1]. With p_t the probability given
    to the target, loss = alpha_t * (1 - p_t)^gamma * BCE, alpha_t = alpha for positives and
    1 - alpha for negatives; ``alpha < 0`` drops the alpha_t weighting.
    """
    targets = targets.to(logits.dtype)
    prob = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = bce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return reduce_loss(loss, reduction)


def _check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    return reduction


@LOSSES.register()
class FocalLoss(nn.Module):
    """``loss_weight * sigmoid_focal_loss(logits, targets, alpha, gamma, reduction)``."""

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "mean", loss_weight: float = 1.0):
        super().__init__()
        self.alpha = alpha
        self.gamma = gamma
        self.reduction = _check_reduction(reduction)
        self.loss_weight = loss_weight

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """``logits`` and ``targets`` of the same shape, targets in [0, 1]."""
        return self.loss_weight * sigmoid_focal_loss(logits, targets, self.alpha, self.gamma, self.reduction)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, gamma={self.gamma}, reduction={self.reduction!r}, loss_weight={self.loss_weight}"


@LOSSES.register()
class BCEWithLogitsLoss(nn.Module):
    """``loss_weight * binary_cross_entropy_with_logits(logits, targets, reduction)``."""

    def __init__(self, reduction: str = "mean", loss_weight: float = 1.0):
        super().__init__()
        self.reduction = _check_reduction(reduction)
        self.loss_weight = loss_weight

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """``logits`` and ``targets`` of the same shape, targets in [0, 1]."""
        targets = targets.to(logits.dtype)
        return self.loss_weight * F.binary_cross_entropy_with_logits(logits, targets, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, loss_weight={self.loss_weight}"
