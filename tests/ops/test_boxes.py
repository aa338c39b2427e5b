"""Box geometry: the torch IoU family (detector.ops.boxes) and the tracker's numpy counterpart
(detector.tracking.geometry) on hand-computed cases, fixture parity and each other."""

import math

import numpy as np
import pytest
import torch

from detector.ops.boxes import (
    aligned_iou,
    aligned_iou_cxcywh,
    box_area,
    box_iou,
    box_iou_cxcywh,
    generalized_box_iou,
    xyxy_to_cxcywh,
    xyxy_to_xywh,
)
from detector.tracking import geometry

KINDS = ("iou", "giou", "diou", "ciou")

_V = 4 / math.pi**2 * (math.atan(2.0) - math.atan(1.0)) ** 2
# Point in a 2 x 2 box, same centre: IoU 0, GIoU 0 (the union fills the enclosing box), DIoU 0;
# the point's aspect angle is atan(0) and the box's pi / 4: v = 1/4, alpha = v / (1 + v) = 0.2.
_POINT_CIOU = -0.2 * 0.25

#: name: (box a, box b (xyxy), IoU, GIoU, DIoU, CIoU), all by hand.
HAND_CASES = {
    "identical": ([0, 0, 10, 20], [0, 0, 10, 20], 1.0, 1.0, 1.0, 1.0),
    # Union 2, enclosing box 3 x 1; centres 2 apart, enclosing diagonal^2 10; same aspect: v = 0.
    "disjoint": ([0, 0, 1, 1], [2, 0, 3, 1], 0.0, -1 / 3, -0.4, -0.4),
    # Concentric, same aspect ratio, enclosing box = outer: every variant is the IoU.
    "contained": ([0, 0, 4, 4], [1, 1, 3, 3], 0.25, 0.25, 0.25, 0.25),
    # Sharing an edge: no overlap, the union fills the enclosing 2 x 1 box; centres 1 apart, diagonal^2 5.
    "touching": ([0, 0, 1, 1], [1, 0, 2, 1], 0.0, 0.0, -0.2, -0.2),
    # Inter 1, union 7, enclosing 3 x 3; centres sqrt(2) apart, diagonal^2 18.
    "overlapping": ([0, 0, 2, 2], [1, 1, 3, 3], 1 / 7, 1 / 7 - 2 / 9, 1 / 7 - 1 / 9, 1 / 7 - 1 / 9),
    # Inter 4 = union 8 / 2 = enclosing box / 2; centres 1 apart, diagonal^2 20; aspects 1 and 2.
    "aspect": ([0, 0, 2, 2], [0, 0, 4, 2], 0.5, 0.5, 0.5 - 1 / 20, 0.5 - 1 / 20 - _V / (0.5 + _V) * _V),
    "point_in_box": ([1, 1, 1, 1], [0, 0, 2, 2], 0.0, 0.0, 0.0, _POINT_CIOU),
    "point_on_itself": ([1, 1, 1, 1], [1, 1, 1, 1], 0.0, 0.0, 0.0, 0.0),
}
CASES = pytest.mark.parametrize("case", HAND_CASES.values(), ids=HAND_CASES.keys())


def pair(case, dtype=torch.float32):
    return torch.tensor([case[0]], dtype=dtype), torch.tensor([case[1]], dtype=dtype)


def random_boxes(n, seed):
    g = torch.Generator().manual_seed(seed)
    xy, wh = torch.rand(n, 2, generator=g) * 100, torch.rand(n, 2, generator=g) * 40 + 0.5
    return torch.cat((xy, xy + wh), dim=1)


@CASES
def test_xyxy_forms_by_hand(case):
    a, b = pair(case)
    for kind, expected in zip(KINDS, case[2:], strict=True):
        torch.testing.assert_close(aligned_iou(a, b, kind), torch.tensor([expected]), msg=kind)
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[case[2]]]))
    torch.testing.assert_close(generalized_box_iou(a, b), torch.tensor([[case[3]]]))


@CASES
def test_cxcywh_forms_by_hand(case):
    a, b = (xyxy_to_cxcywh(t) for t in pair(case))
    torch.testing.assert_close(box_iou_cxcywh(a, b), torch.tensor([[case[2]]]))
    for eps in (None, 1e-16):
        torch.testing.assert_close(aligned_iou_cxcywh(a, b, "iou", eps=eps), torch.tensor([case[2]]))
        torch.testing.assert_close(aligned_iou_cxcywh(a, b, "giou", eps=eps), torch.tensor([case[3]]))


@CASES
def test_numpy_tracker_forms_by_hand(case):
    a, b = pair(case, torch.float64)
    np.testing.assert_allclose(geometry.box_iou(a.numpy(), b.numpy()), [[case[2]]], atol=1e-12)
    iou_xywh = geometry.box_iou_xywh(xyxy_to_xywh(a).numpy(), xyxy_to_xywh(b).numpy())
    np.testing.assert_allclose(iou_xywh, [[case[2]]], atol=1e-12)
    np.testing.assert_allclose(geometry.generalized_box_iou(a.numpy(), b.numpy()), [[case[3]]], atol=1e-12)


def test_box_area():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 20.0], [1.0, 1.0, 1.0, 5.0]])
    torch.testing.assert_close(box_area(boxes), torch.tensor([200.0, 0.0]))
    torch.testing.assert_close(box_area(boxes[None]), torch.tensor([[200.0, 0.0]]))


def test_empty_inputs():
    some, none = random_boxes(3, 0), torch.zeros(0, 4)
    assert box_iou(none, some).shape == (0, 3) and generalized_box_iou(some, none).shape == (3, 0)
    assert box_iou_cxcywh(none, some).shape == (0, 3) and aligned_iou_cxcywh(none, none).shape == (0,)
    assert aligned_iou(none, none, "ciou").shape == (0,)
    assert geometry.box_iou(none.numpy(), some.numpy()).shape == (0, 3)
    assert geometry.box_iou_xywh(some.numpy(), none.numpy()).shape == (3, 0)
    assert geometry.generalized_box_iou(none.numpy(), some.numpy()).shape == (0, 3)


def test_cxcywh_forms_equal_xyxy_forms_on_random_boxes():
    a, b = random_boxes(60, 1), random_boxes(40, 2)
    b[:10] = a[:10]  # identical pairs too
    ca, cb = xyxy_to_cxcywh(a), xyxy_to_cxcywh(b)
    torch.testing.assert_close(box_iou_cxcywh(ca, cb), box_iou(a, b))
    for kind in ("iou", "giou"):
        torch.testing.assert_close(aligned_iou_cxcywh(ca[:40], cb, kind), aligned_iou(a[:40], b, kind))
        torch.testing.assert_close(aligned_iou_cxcywh(ca[:40], cb, kind, eps=1e-16), aligned_iou(a[:40], b, kind))
    # A pair gets exactly the value of the pairwise matrix (the assigners rely on it).
    assert torch.equal(aligned_iou_cxcywh(ca[:40], cb), box_iou_cxcywh(ca[:40], cb).diagonal())


def test_numpy_tracker_forms_equal_torch_on_random_boxes():
    a, b = random_boxes(50, 3).double(), random_boxes(30, 4).double()
    b[:5] = a[:5]
    an, bn = a.numpy(), b.numpy()
    np.testing.assert_allclose(geometry.box_iou(an, bn), box_iou(a, b).numpy(), rtol=0, atol=1e-12)
    iou_xywh = geometry.box_iou_xywh(xyxy_to_xywh(a).numpy(), xyxy_to_xywh(b).numpy())
    np.testing.assert_allclose(iou_xywh, box_iou(a, b).numpy(), atol=1e-12)
    np.testing.assert_allclose(geometry.generalized_box_iou(an, bn), generalized_box_iou(a, b).numpy(), atol=1e-12)


@pytest.fixture(scope="module")
def oracle(fixtures_dir):
    return torch.load(fixtures_dir / "loss_oracle.pt", weights_only=True)


def test_pairwise_matrices_match_fixture(oracle):
    b1, b2 = oracle["boxes1_xyxy"], oracle["boxes2_xyxy"]
    torch.testing.assert_close(box_iou(b1, b2), oracle["box_iou_matrix"], atol=1e-6, rtol=0)
    torch.testing.assert_close(generalized_box_iou(b1, b2), oracle["generalized_box_iou_matrix"], atol=1e-6, rtol=0)


def test_aligned_iou_is_diagonal_of_pairwise(oracle):
    b1, b2 = oracle["boxes1_xyxy"], oracle["boxes2_xyxy"]
    torch.testing.assert_close(aligned_iou(b1, b2, "iou"), box_iou(b1, b2).diagonal(), atol=1e-6, rtol=0)
    torch.testing.assert_close(aligned_iou(b1, b2, "giou"), generalized_box_iou(b1, b2).diagonal(), atol=1e-6, rtol=0)


def test_broadcasting():
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0]])
    torch.testing.assert_close(aligned_iou(boxes[:, None], boxes[None], "iou"), box_iou(boxes, boxes))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_compute_in_float32(oracle, dtype):
    b1, b2 = oracle["boxes1_xyxy"].to(dtype), oracle["boxes2_xyxy"].to(dtype)
    c1, c2 = xyxy_to_cxcywh(b1), xyxy_to_cxcywh(b2)
    for out in (box_iou(b1, b2), generalized_box_iou(b1, b2), aligned_iou(b1, b2, "ciou"), box_iou_cxcywh(c1, c2)):
        assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_zero_area_boxes_give_no_nan():
    point = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    other = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0], [3.0, 3.0, 3.0, 3.0]])
    for out in (box_iou(point, other), generalized_box_iou(point, other), box_iou_cxcywh(point, other)):
        assert torch.isfinite(out).all()
    assert np.isfinite(geometry.generalized_box_iou(point.numpy(), other.numpy())).all()


def test_unknown_kind_names_value_and_choices():
    boxes = torch.zeros(1, 4)
    with pytest.raises(ValueError, match=r"iou, giou, diou, ciou.*'eiou'"):
        aligned_iou(boxes, boxes, kind="eiou")
    with pytest.raises(ValueError, match=r"iou, giou.*'diou'"):
        aligned_iou_cxcywh(boxes, boxes, kind="diou")
