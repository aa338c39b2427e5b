"""IoU-family losses: fixture parity (torchvision / YOLOX numbers) and hand cases. The IoUs
themselves are tested in tests/ops/test_boxes.py."""

import pytest
import torch

from detector.losses import IoULoss, iou_loss, yolox_iou_loss
from detector.ops.boxes import xyxy_to_cxcywh
from detector.registry import LOSSES

ATOL = 1e-6
KINDS = ("iou", "giou", "diou", "ciou")


@pytest.fixture(scope="module")
def oracle(fixtures_dir):
    return torch.load(fixtures_dir / "loss_oracle.pt", weights_only=True)


def assert_tight(actual, expected):
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("kind", ["giou", "diou", "ciou"])
def test_iou_losses_match_fixture(oracle, kind):
    assert_tight(iou_loss(oracle["boxes1_xyxy"], oracle["boxes2_xyxy"], kind=kind), oracle[f"{kind}_loss_none"])


@pytest.mark.parametrize("kind", ["iou", "giou"])
def test_yolox_iou_loss_matches_fixture(oracle, kind):
    pred, target = xyxy_to_cxcywh(oracle["boxes1_xyxy"]), xyxy_to_cxcywh(oracle["boxes2_xyxy"])
    assert_tight(yolox_iou_loss(pred, target, kind=kind), oracle[f"yolox_{kind}_loss_none"])


@pytest.mark.parametrize("kind", KINDS)
def test_identical_boxes(kind):
    boxes = torch.tensor([[0.0, 0.0, 10.0, 20.0], [5.0, 5.0, 6.0, 9.0]])
    torch.testing.assert_close(iou_loss(boxes, boxes, kind), torch.zeros(2))


def test_yolox_loss_of_disjoint_boxes():
    a, b = torch.tensor([0.0, 0.0, 1.0, 1.0]), torch.tensor([2.0, 0.0, 3.0, 1.0])
    assert yolox_iou_loss(xyxy_to_cxcywh(a), xyxy_to_cxcywh(b), "iou").item() == 1.0
    # Union 2, enclosing box 3 x 1: GIoU = -1/3, loss 1 + 1/3.
    torch.testing.assert_close(yolox_iou_loss(xyxy_to_cxcywh(a), xyxy_to_cxcywh(b), "giou"), torch.tensor(4 / 3))


@pytest.mark.parametrize("kind", KINDS)
def test_zero_area_boxes_give_no_nan(kind):
    point = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]], requires_grad=True)
    other = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
    loss = iou_loss(point, other, kind)
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(point.grad).all()
    assert torch.isfinite(yolox_iou_loss(xyxy_to_cxcywh(point.detach()), xyxy_to_cxcywh(other), "giou")).all()


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_are_finite(oracle, kind):
    pred = oracle["boxes1_xyxy"].clone().requires_grad_(True)
    target = torch.cat([oracle["boxes2_xyxy"], oracle["boxes2_xyxy"][:4]])
    pred_all = torch.cat([pred, target[-4:]])  # identical pairs too
    iou_loss(pred_all, target, kind, reduction="mean").backward()
    assert torch.isfinite(pred.grad).all()
    assert pred.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", KINDS)
def test_half_precision_inputs(oracle, kind, dtype):
    b1, b2 = oracle["boxes1_xyxy"].to(dtype), oracle["boxes2_xyxy"].to(dtype)
    out = iou_loss(b1, b2, kind)
    assert out.dtype == torch.float32  # pixel areas overflow float16, so the maths runs in float32
    torch.testing.assert_close(out, iou_loss(b1.float(), b2.float(), kind))
    assert torch.isfinite(yolox_iou_loss(xyxy_to_cxcywh(b1), xyxy_to_cxcywh(b2), "giou")).all()


def test_reductions(oracle):
    b1, b2 = oracle["boxes1_xyxy"], oracle["boxes2_xyxy"]
    per_box = iou_loss(b1, b2, "giou")
    torch.testing.assert_close(iou_loss(b1, b2, "giou", reduction="mean"), per_box.mean())
    torch.testing.assert_close(iou_loss(b1, b2, "giou", reduction="sum"), per_box.sum())
    with pytest.raises(ValueError, match="'avg'"):
        iou_loss(b1, b2, reduction="avg")


def test_unknown_kind_names_value_and_choices():
    boxes = torch.zeros(1, 4)
    with pytest.raises(ValueError, match=r"iou, giou.*'diou'"):
        yolox_iou_loss(boxes, boxes, kind="diou")
    with pytest.raises(ValueError, match=r"iou, giou, diou, ciou.*'eiou'"):
        IoULoss(kind="eiou")


def test_yolox_giou_close_to_plain_giou_loss(oracle):
    b1, b2 = oracle["boxes1_xyxy"], oracle["boxes2_xyxy"]
    yolox = yolox_iou_loss(xyxy_to_cxcywh(b1), xyxy_to_cxcywh(b2), "giou")
    torch.testing.assert_close(yolox, iou_loss(b1, b2, "giou"), atol=1e-5, rtol=0)


def test_iou_loss_module_from_registry(oracle):
    b1, b2 = oracle["boxes1_xyxy"], oracle["boxes2_xyxy"]
    module = LOSSES.build({"type": "IoULoss", "kind": "ciou", "reduction": "sum", "loss_weight": 5.0})
    torch.testing.assert_close(module(b1, b2), 5.0 * iou_loss(b1, b2, "ciou").sum())
    weight = torch.rand(b1.shape[0])
    torch.testing.assert_close(module(b1, b2, weight), 5.0 * (iou_loss(b1, b2, "ciou") * weight).sum())
    assert IoULoss()(b1, b2).shape == ()
