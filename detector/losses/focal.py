"""Classification losses on logits: binary cross-entropy, sigmoid focal loss, and the
IoU-aware quality focal and varifocal losses.

Each loss module says how a detection loss should use it: ``dense`` losses are summed over
every prior (negatives included, with target 0), the others over positives only;
``soft_targets`` losses learn the IoU of the prediction with its gt as the positive class's
target, the others a hard 1."""

from __future__ import annotations

import torch
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


def quality_focal_loss(logits: Tensor, targets: Tensor, beta: float = 2.0, reduction: str = "none") -> Tensor:
    """Quality focal loss of GFL (Li et al., 2020), element-wise: BCE(logits, y) * |y - p|^beta
    with soft targets ``y`` in [0, 1] (the IoU for the gt class, 0 elsewhere)."""
    targets = targets.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return reduce_loss(bce * (targets - logits.sigmoid()).abs().pow(beta), reduction)


def varifocal_loss(
    logits: Tensor, targets: Tensor, alpha: float = 0.75, gamma: float = 2.0, reduction: str = "none"
) -> Tensor:
    """Varifocal loss of VarifocalNet (Zhang et al., 2021), element-wise: BCE(logits, q)
    weighted by q where q > 0 (positives, q = IoU) and by alpha * p^gamma where q = 0."""
    targets = targets.to(logits.dtype)
    positive = targets > 0
    weight = torch.where(positive, targets, alpha * logits.sigmoid().pow(gamma))
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return reduce_loss(bce * weight.detach(), reduction)


def _check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    return reduction


@LOSSES.register()
class FocalLoss(nn.Module):
    """``loss_weight * sigmoid_focal_loss(logits, targets, alpha, gamma, reduction)``."""

    dense = True
    soft_targets = False

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
    """``loss_weight * binary_cross_entropy_with_logits(logits, targets, reduction)``: on
    positives only, with the IoU as target (YOLOX) or, ``soft_targets=False``, hard (YOLOv5)."""

    dense = False

    def __init__(self, reduction: str = "mean", loss_weight: float = 1.0, soft_targets: bool = True):
        super().__init__()
        self.reduction = _check_reduction(reduction)
        self.loss_weight = loss_weight
        self.soft_targets = soft_targets

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """``logits`` and ``targets`` of the same shape, targets in [0, 1]."""
        targets = targets.to(logits.dtype)
        return self.loss_weight * F.binary_cross_entropy_with_logits(logits, targets, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, loss_weight={self.loss_weight}, soft_targets={self.soft_targets}"


@LOSSES.register()
class QualityFocalLoss(nn.Module):
    """``loss_weight * quality_focal_loss(logits, targets, beta, reduction)``."""

    dense = True
    soft_targets = True

    def __init__(self, beta: float = 2.0, reduction: str = "mean", loss_weight: float = 1.0):
        super().__init__()
        self.beta = beta
        self.reduction = _check_reduction(reduction)
        self.loss_weight = loss_weight

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """``logits`` and soft ``targets`` of the same shape, targets in [0, 1]."""
        return self.loss_weight * quality_focal_loss(logits, targets, self.beta, self.reduction)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, reduction={self.reduction!r}, loss_weight={self.loss_weight}"


@LOSSES.register()
class VarifocalLoss(nn.Module):
    """``loss_weight * varifocal_loss(logits, targets, alpha, gamma, reduction)``."""

    dense = True
    soft_targets = True

    def __init__(self, alpha: float = 0.75, gamma: float = 2.0, reduction: str = "mean", loss_weight: float = 1.0):
        super().__init__()
        self.alpha = alpha
        self.gamma = gamma
        self.reduction = _check_reduction(reduction)
        self.loss_weight = loss_weight

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """``logits`` and soft ``targets`` of the same shape, targets in [0, 1]."""
        return self.loss_weight * varifocal_loss(logits, targets, self.alpha, self.gamma, self.reduction)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, gamma={self.gamma}, reduction={self.reduction!r}, loss_weight={self.loss_weight}"
