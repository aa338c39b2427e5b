"""Every assigner returns the same AssignResult contract, on anchor-free and anchor-based priors."""

import pytest
import torch

from detector.assigners import BACKGROUND, ATSSAssigner, SimOTAAssigner, YOLOv5Assigner, pad_targets
from detector.ops.boxes import aligned_iou_cxcywh
from detector.ops.priors import make_priors

SIZES, STRIDES = [(16, 16), (8, 8), (4, 4)], [8, 16, 32]
ANCHORS = [[(10, 13), (16, 30), (33, 23)], [(30, 61), (62, 45), (59, 119)], [(116, 90), (156, 198), (373, 326)]]


def batch_inputs(priors, num_classes=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    batch, num = 3, priors.shape[0]
    centers = (priors[:, :2] + 0.5) * priors[:, 2:3]
    pred_boxes = torch.cat(
        (
            centers + torch.randn(batch, num, 2, generator=generator) * 4,
            priors[:, 3:5] * torch.exp(torch.randn(batch, num, 2, generator=generator) * 0.3),
        ),
        dim=-1,
    )
    cls_logits = torch.randn(batch, num, num_classes, generator=generator)
    obj_logits = torch.randn(batch, num, generator=generator)
    # Image 0: three gts, image 1: none, image 2: one gt at the border.
    targets = torch.tensor(
        [
            [0, 1, 20, 30, 60, 90],
            [0, 3, 64, 64, 100, 80],
            [0, 0, 10, 10, 30, 24],
            [2, 2, 0, 0, 40, 36],
        ],
        dtype=torch.float32,
    )
    return pred_boxes, cls_logits, obj_logits, *pad_targets(targets, batch)


CASES = [
    ("simota", SimOTAAssigner(), None),
    ("atss", ATSSAssigner(), None),
    ("atss-anchors", ATSSAssigner(anchor_scale=None), ANCHORS),
    ("simota-anchors", SimOTAAssigner(), ANCHORS),
    ("yolov5", YOLOv5Assigner(), ANCHORS),
]


@pytest.mark.parametrize("name, assigner, anchors", CASES, ids=[c[0] for c in CASES])
def test_assign_result_contract(name, assigner, anchors):
    priors = make_priors(SIZES, STRIDES, anchors=anchors)
    pred_boxes, cls_logits, obj_logits, gt_boxes, gt_labels, gt_mask = batch_inputs(priors)
    result = assigner(priors, pred_boxes, cls_logits, obj_logits, gt_boxes, gt_labels, gt_mask)
    batch, num = pred_boxes.shape[:2]
    assert result.gt_inds.shape == result.labels.shape == result.quality.shape == (batch, num)
    assert result.boxes.shape == (batch, num, 4)
    assert result.gt_inds.dtype == result.labels.dtype == torch.long
    assert result.quality.dtype == result.boxes.dtype == torch.float32
    fg = result.fg_mask
    assert fg[0].any() and fg[2].any(), f"{name}: every image with gts gets positives"
    assert not fg[1].any() and (result.gt_inds[1] == BACKGROUND).all()
    assert result.num_fg == int(fg.sum())
    # Positives point at real gts and carry their label and box; the rest is empty.
    counts = gt_mask.sum(dim=1)
    for b in range(batch):
        inds = result.gt_inds[b][fg[b]]
        assert ((inds >= 0) & (inds < counts[b])).all()
        assert torch.equal(result.labels[b][fg[b]], gt_labels[b][inds])
        assert torch.equal(result.boxes[b][fg[b]], gt_boxes[b][inds])
    assert (result.labels[~fg] == -1).all() and (result.boxes[~fg] == 0).all() and (result.quality[~fg] == 0).all()
    expected_quality = aligned_iou_cxcywh(pred_boxes[fg], result.boxes[fg])
    assert torch.equal(result.quality[fg], expected_quality)
    assert ((result.quality >= 0) & (result.quality <= 1)).all()
    # Every gt of image 0 is learnt from somewhere.
    assert set(result.gt_inds[0][fg[0]].tolist()) == {0, 1, 2}


def test_pad_targets_keeps_order_and_marks_rows():
    targets = torch.tensor([[1, 4, 0, 0, 10, 20], [0, 2, 5, 5, 15, 25], [1, 3, 2, 2, 4, 4]], dtype=torch.float32)
    boxes, labels, mask = pad_targets(targets, 3)
    assert labels.tolist() == [[2, -1], [4, 3], [-1, -1]]
    assert mask.tolist() == [[True, False], [True, True], [False, False]]
    assert boxes[1, 0].tolist() == [5.0, 10.0, 10.0, 20.0]  # cxcywh
    empty_boxes, empty_labels, empty_mask = pad_targets(torch.zeros(0, 6), 2)
    assert empty_boxes.shape == (2, 1, 4) and not empty_mask.any()


def test_bad_shapes_are_named():
    priors = make_priors(SIZES, STRIDES)
    pred_boxes, cls_logits, obj_logits, gt_boxes, gt_labels, gt_mask = batch_inputs(priors)
    with pytest.raises(ValueError, match="priors but predictions"):
        SimOTAAssigner()(priors[:-1], pred_boxes, cls_logits, obj_logits, gt_boxes, gt_labels, gt_mask)
    with pytest.raises(ValueError, match="gt_boxes"):
        SimOTAAssigner()(priors, pred_boxes, cls_logits, obj_logits, gt_boxes[:2], gt_labels, gt_mask)
