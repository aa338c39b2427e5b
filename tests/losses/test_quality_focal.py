"""Quality focal and varifocal losses on hand-computed values, and how detection losses use them."""

import math

import pytest
import torch

from detector.losses import QualityFocalLoss, VarifocalLoss, quality_focal_loss, varifocal_loss
from detector.registry import LOSSES


def test_quality_focal_hand_computed():
    # logit 0 -> p = 0.5; BCE(0.5, y) = ln 2 for any y; weight |y - p|^2.
    loss = quality_focal_loss(torch.zeros(3), torch.tensor([0.8, 0.5, 0.0]))
    expected = torch.tensor([0.09, 0.0, 0.25]) * math.log(2)
    assert torch.allclose(loss, expected)
    # A confident correct soft score costs almost nothing; beta 0 is plain BCE.
    assert quality_focal_loss(torch.tensor([math.log(0.8 / 0.2)]), torch.tensor([0.8])).item() < 1e-12
    assert torch.allclose(
        quality_focal_loss(torch.tensor([1.0]), torch.tensor([0.3]), beta=0.0),
        torch.nn.functional.binary_cross_entropy_with_logits(
            torch.tensor([1.0]), torch.tensor([0.3]), reduction="none"
        ),
    )


def test_varifocal_hand_computed():
    loss = varifocal_loss(torch.zeros(2), torch.tensor([0.8, 0.0]))
    # positive: weight q = 0.8; negative: alpha * p^gamma = 0.75 * 0.25.
    assert torch.allclose(loss, torch.tensor([0.8, 0.1875]) * math.log(2))


def test_varifocal_weight_is_not_differentiated():
    logits = torch.tensor([0.3, -0.2], requires_grad=True)
    varifocal_loss(logits, torch.tensor([0.0, 0.0])).sum().backward()
    p = torch.sigmoid(logits.detach())
    # d/dx of w * BCE(x, 0) with w fixed = w * p.
    assert torch.allclose(logits.grad, 0.75 * p**2 * p)


@pytest.mark.parametrize("name, cls", [("QualityFocalLoss", QualityFocalLoss), ("VarifocalLoss", VarifocalLoss)])
def test_registry_and_usage_flags(name, cls):
    module = LOSSES.build({"type": name, "reduction": "sum", "loss_weight": 2.0})
    assert isinstance(module, cls)
    assert module.dense and module.soft_targets
    logits, targets = torch.randn(4, 3), torch.rand(4, 3)
    assert torch.allclose(module(logits, targets), 2.0 * cls(reduction="none")(logits, targets).sum())
    bce = LOSSES.build({"type": "BCEWithLogitsLoss", "soft_targets": False})
    assert not bce.dense and not bce.soft_targets
    assert LOSSES.build({"type": "FocalLoss"}).dense
