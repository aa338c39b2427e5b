"""Sigmoid focal loss and BCE-with-logits wrappers."""

import pytest
import torch
import torch.nn.functional as F

from detector.losses import BCEWithLogitsLoss, FocalLoss, sigmoid_focal_loss
from detector.registry import LOSSES


@pytest.fixture(scope="module")
def oracle(fixtures_dir):
    return torch.load(fixtures_dir / "loss_oracle.pt", weights_only=True)


def test_matches_fixture(oracle):
    out = sigmoid_focal_loss(oracle["logits"], oracle["targets"], alpha=0.25, gamma=2.0)
    torch.testing.assert_close(out, oracle["sigmoid_focal_loss_none_a0.25_g2"], atol=1e-6, rtol=0)


def test_hand_computed_values():
    logits = torch.tensor([0.0, 2.0, -1.0])
    targets = torch.tensor([1.0, 0.0, 1.0])
    p = torch.sigmoid(logits)
    p_t = torch.tensor([p[0], 1 - p[1], p[2]])
    alpha_t = torch.tensor([0.25, 0.75, 0.25])
    expected = -alpha_t * (1 - p_t) ** 2 * torch.log(p_t)
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets), expected)


def test_negative_alpha_disables_weighting_and_gamma_zero_is_bce(oracle):
    logits, targets = oracle["logits"], oracle["targets"]
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, alpha=-1, gamma=0.0), bce)
    weighted = sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=0.0)
    torch.testing.assert_close(weighted, bce * torch.where(targets > 0, 0.25, 0.75))


def test_reductions_and_gradient(oracle):
    logits = oracle["logits"].clone().requires_grad_(True)
    per_element = sigmoid_focal_loss(logits, oracle["targets"])
    torch.testing.assert_close(sigmoid_focal_loss(logits, oracle["targets"], reduction="mean"), per_element.mean())
    total = sigmoid_focal_loss(logits, oracle["targets"], reduction="sum")
    torch.testing.assert_close(total, per_element.sum())
    total.backward()
    assert torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="'avg'"):
        sigmoid_focal_loss(logits, oracle["targets"], reduction="avg")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_and_extreme_logits(dtype):
    logits = torch.tensor([-30.0, -5.0, 0.0, 5.0, 30.0], dtype=dtype)
    targets = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])
    out = sigmoid_focal_loss(logits, targets)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), sigmoid_focal_loss(logits.float(), targets), atol=5e-2, rtol=5e-2)


def test_modules_from_registry(oracle):
    logits, targets = oracle["logits"], oracle["targets"]
    focal = LOSSES.build({"type": "FocalLoss", "alpha": 0.5, "gamma": 1.5, "reduction": "sum", "loss_weight": 2.0})
    torch.testing.assert_close(focal(logits, targets), 2.0 * sigmoid_focal_loss(logits, targets, 0.5, 1.5).sum())
    bce = LOSSES.build({"type": "BCEWithLogitsLoss", "loss_weight": 0.5})
    torch.testing.assert_close(bce(logits, targets), 0.5 * F.binary_cross_entropy_with_logits(logits, targets))
    assert FocalLoss()(logits, targets).shape == ()
    with pytest.raises(ValueError, match="'avg'"):
        BCEWithLogitsLoss(reduction="avg")
