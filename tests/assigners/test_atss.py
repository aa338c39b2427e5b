"""ATSS rules on hand-made cases: two levels of a 64x64 input, stride 8 (8x8 cells, centres at
4, 12, ..., 60) and stride 16 (4x4 cells, centres at 8, 24, 40, 56); with anchor_scale 2 the
prior boxes are 16x16 and 32x32 squares around the cell centres."""

import statistics

import pytest
import torch

from detector.assigners.atss import ATSSAssigner
from detector.assigners.base import BACKGROUND
from detector.ops.boxes import box_iou_cxcywh
from detector.ops.priors import make_priors, prior_centers
from detector.registry import ASSIGNERS

PRIORS = make_priors([(8, 8), (4, 4)], [8, 16])


def prior_at(stride: int, cx: float, cy: float) -> int:
    """Index of the prior of this stride whose cell centre is (cx, cy)."""
    centers = prior_centers(PRIORS)
    hit = ((PRIORS[:, 2] == stride) & (centers[:, 0] == cx) & (centers[:, 1] == cy)).nonzero()
    return int(hit[0, 0])


def assign(gt_boxes, topk=2, anchor_scale=2.0, priors=PRIORS):
    """gt_inds [P] for one image with gts ``[G, 4]`` cxcywh."""
    gt_boxes = torch.tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4)
    num = priors.shape[0]
    assigner = ATSSAssigner(topk=topk, anchor_scale=anchor_scale)
    result = assigner(
        priors,
        torch.zeros(1, num, 4),
        torch.zeros(1, num, 3),
        None,
        gt_boxes[None],
        torch.zeros(1, gt_boxes.shape[0], dtype=torch.long),
        torch.ones(1, gt_boxes.shape[0], dtype=torch.bool),
    )
    return result.gt_inds[0]


def positives(gt_inds):
    return set((gt_inds >= 0).nonzero().flatten().tolist())


def test_gt_between_levels_is_positive_only_where_its_iou_clears_mean_plus_std():
    # gt 24x24 at (22, 21): box x 10..34, y 9..33, area 576. Nearest two centres per level:
    # stride 8: (20, 20) box 12..28 x 12..28, inside the gt: IoU 256 / 576;
    #           (28, 20) box 20..36 x 12..28: overlap 14 x 16 = 224, IoU 224 / 608;
    # stride 16: (24, 24) box 8..40 x 8..40 holds the gt: IoU 576 / 1024;
    #            (24, 8) box 8..40 x -8..24: overlap 24 x 15 = 360, IoU 360 / 1240.
    ious = [256 / 576, 224 / 608, 576 / 1024, 360 / 1240]
    threshold = statistics.mean(ious) + statistics.stdev(ious)  # 0.532
    assert [iou >= threshold for iou in ious] == [False, False, True, False]
    gt_inds = assign([22, 21, 24, 24])
    assert positives(gt_inds) == {prior_at(16, 24, 24)}
    assert gt_inds[prior_at(16, 24, 24)] == 0


def test_candidate_outside_the_gt_is_not_positive():
    # A flat gt 40x6 at (24, 30): y 27..33. Nearest on stride 16: (24, 24) and (24, 40) (tie
    # broken either way); both centres lie outside y 27..33, so whatever their IoU, the
    # positives can only be stride-8 priors with centres inside the gt (y = 28).
    gt_inds = assign([24, 30, 40, 6], topk=3)
    found = positives(gt_inds)
    assert found, "a gt this size has positives"
    centers = prior_centers(PRIORS)[sorted(found)]
    assert (centers[:, 1] == 28).all() and (PRIORS[sorted(found), 2] == 8).all()


def test_two_gts_competing_for_a_prior_go_to_the_higher_iou():
    big, small = [20, 20, 24, 24], [26, 22, 20, 20]
    alone_big, alone_small = positives(assign(big, topk=9)), positives(assign(small, topk=9))
    shared = alone_big & alone_small
    assert shared, "the case must make both gts claim a prior"
    both = assign([big, small], topk=9)
    prior_boxes = ATSSAssigner(anchor_scale=2.0).prior_boxes(PRIORS)
    ious = box_iou_cxcywh(torch.tensor([big, small], dtype=torch.float32), prior_boxes)
    for prior in shared:
        expected = 0 if ious[0, prior] > ious[1, prior] else 1
        assert both[prior] == expected
    assert positives(both) == alone_big | alone_small


def test_tiny_gt_gets_the_prior_whose_centre_it_covers_or_none():
    # A 2x2 gt centred on the stride-8 cell centre (20, 20) overlaps that 16x16 prior most
    # (IoU 4 / 256) and holds its centre: that prior is its only positive.
    assert positives(assign([20, 20, 2, 2])) == {prior_at(8, 20, 20)}
    # At (16, 16) no cell centre of either level lies inside it: ATSS gives it no positive.
    assert positives(assign([16, 16, 2, 2])) == set()


def test_gt_at_the_image_border():
    gt_inds = assign([6, 6, 12, 12])  # box 0..12 x 0..12 in the corner
    found = sorted(positives(gt_inds))
    assert found
    centers = prior_centers(PRIORS)[found]
    assert ((centers > 0) & (centers < 12)).all()


def test_images_without_gts_are_background():
    num = PRIORS.shape[0]
    gt_boxes = torch.tensor([[[22.0, 21.0, 24.0, 24.0]], [[0.0, 0.0, 0.0, 0.0]]])
    result = ATSSAssigner(topk=2, anchor_scale=2.0)(
        PRIORS,
        torch.zeros(2, num, 4),
        torch.zeros(2, num, 3),
        None,
        gt_boxes,
        torch.tensor([[1], [-1]]),
        torch.tensor([[True], [False]]),
    )
    assert (result.gt_inds[1] == BACKGROUND).all()
    assert result.fg_mask[0].sum() == 1 and (result.labels[0][result.fg_mask[0]] == 1).all()


def test_anchor_based_priors_use_their_own_anchor_boxes():
    priors = make_priors([(8, 8)], [8], anchors=[[(16, 16), (40, 10)]])
    boxes = ATSSAssigner(anchor_scale=None).prior_boxes(priors)
    assert torch.equal(boxes[0], torch.tensor([4.0, 4.0, 16.0, 16.0]))
    assert torch.equal(boxes[64], torch.tensor([4.0, 4.0, 40.0, 10.0]))
    # A 40x10 gt centred on cell (3, 3): candidates are both anchors there (IoU 160 / 496 and
    # 1) and one neighbour (IoU 0.32 or 0.67); mean + std stays below 1, so the wide anchor
    # at its cell is positive.
    gt_inds = assign([28, 28, 40, 10], topk=3, anchor_scale=None, priors=priors)
    assert gt_inds[64 + 3 * 8 + 3] == 0  # cell (3, 3), second anchor


def test_config_and_bad_settings():
    assigner = ASSIGNERS.build({"type": "ATSSAssigner", "topk": 5, "anchor_scale": 8})
    assert assigner.topk == 5 and assigner.anchor_scale == 8
    assert "ATSSAssigner(topk=5" in repr(assigner)
    with pytest.raises(ValueError, match="topk"):
        ATSSAssigner(topk=0)
    with pytest.raises(ValueError, match="anchor_scale"):
        ATSSAssigner(anchor_scale=-1)
