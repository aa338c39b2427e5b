"""YOLOv5 matching: parity with YOLOv5's own build_targets, and the per-prior assigner."""

import pytest
import torch

from detector.assigners.base import BACKGROUND
from detector.assigners.yolov5 import YOLOV5_ANCHORS, YOLOv5Assigner, level_layout, match_yolov5
from detector.ops.priors import make_priors
from detector.registry import ASSIGNERS


@pytest.fixture(scope="module")
def oracle(fixtures_dir):
    return torch.load(fixtures_dir / "yolov5_targets_oracle.pt", weights_only=True)


def test_default_anchors_are_yolov5s(oracle):
    assert torch.equal(torch.tensor(YOLOV5_ANCHORS, dtype=torch.float32), oracle["anchors_pixels"])


@pytest.mark.parametrize("case_index", range(20))
def test_build_targets_parity(oracle, case_index):
    case = oracle["cases"][case_index]
    size = case["inputs"]["image_size"]
    grids = [(size // int(s), size // int(s)) for s in oracle["strides"]]
    levels = match_yolov5(case["inputs"]["targets"], oracle["anchors_grid_units"], grids, oracle["anchor_t"])
    out = case["outputs"]
    for level, got in enumerate(levels):
        image, anchor, grid_y, grid_x = out["indices"][level]
        assert torch.equal(got.image, image)
        assert torch.equal(got.anchor, anchor)
        assert torch.equal(got.grid_y, grid_y)
        assert torch.equal(got.grid_x, grid_x)
        assert torch.equal(got.labels, out["tcls"][level])
        assert torch.equal(got.boxes, out["tbox"][level])
        assert torch.equal(got.anchors, out["anchors"][level])


def test_fixture_covers_neighbour_cells(oracle):
    # Guard that parity above is not trivially met: matches spread to neighbours.
    rows = sum(o.shape[0] for case in oracle["cases"] for o in case["outputs"]["tcls"])
    targets = sum(case["inputs"]["targets"].shape[0] for case in oracle["cases"])
    assert rows > 2 * targets


def priors_64():
    # Input 64x64: strides 8 and 16, two anchors each (pixels).
    return make_priors([(8, 8), (4, 4)], [8, 16], anchors=[[(8, 8), (20, 10)], [(24, 24), (60, 30)]])


def run(priors, gt_boxes, pred_boxes=None, labels=None):
    gt_boxes = torch.tensor(gt_boxes, dtype=torch.float32).reshape(1, -1, 4)
    num_gt, num = gt_boxes.shape[1], priors.shape[0]
    if pred_boxes is None:
        pred_boxes = torch.zeros(1, num, 4)
    labels = torch.arange(num_gt)[None] if labels is None else labels
    return YOLOv5Assigner()(
        priors,
        pred_boxes,
        torch.zeros(1, num, 3),
        torch.zeros(1, num),
        gt_boxes,
        labels,
        torch.ones(1, num_gt, dtype=torch.bool),
    )


def prior_index(level_start, anchor, gy, gx, grid):
    return level_start + (anchor * grid + gy) * grid + gx


def test_own_cell_and_two_nearest_neighbours():
    priors = priors_64()
    # 8x8 gt at (29, 45). Stride 8: grid units x 3.625, y 5.625, own cell (gx 3, gy 5);
    # fractions 0.625 are not < 0.5, so no left/up neighbour, but the distances to the far
    # sides, 8 - 3.625 = 4.375 and 8 - 5.625 = 2.375, have fractions < 0.5: right and down
    # neighbours. Anchors (8, 8) (ratio 1) and (20, 10) (ratio 2.5) both match.
    # Stride 16: x 1.8125, y 2.8125, own cell (1, 2), right and down neighbours the same way;
    # only anchor (24, 24) matches (ratio 3; (60, 30) has 7.5 > 4).
    result = run(priors, [29, 45, 8, 8])
    expected = set()
    for anchor in (0, 1):
        for gy, gx in ((5, 3), (5, 4), (6, 3)):
            expected.add(prior_index(0, anchor, gy, gx, 8))
    for gy, gx in ((2, 1), (2, 2), (3, 1)):
        expected.add(prior_index(128, 0, gy, gx, 4))
    assert set(result.fg_mask[0].nonzero().flatten().tolist()) == expected


def test_prior_matched_by_two_gts_keeps_the_better_prediction():
    priors = priors_64()
    gts = [[29, 45, 8, 8], [29.5, 45.5, 9, 9]]  # same cells and anchors
    own = prior_index(0, 0, 5, 3, 8)
    pred_boxes = torch.zeros(1, priors.shape[0], 4)
    pred_boxes[0, own] = torch.tensor([29.5, 45.5, 9, 9])  # exactly the second gt
    result = run(priors, gts, pred_boxes)
    assert result.gt_inds[0, own] == 1
    assert result.quality[0, own] == 1.0
    pred_boxes[0, own] = torch.tensor([29, 45, 8, 8])
    assert run(priors, gts, pred_boxes).gt_inds[0, own] == 0


def test_no_gts_and_bad_priors():
    priors = priors_64()
    num = priors.shape[0]
    result = YOLOv5Assigner()(
        priors,
        torch.zeros(2, num, 4),
        torch.zeros(2, num, 3),
        torch.zeros(2, num),
        torch.zeros(2, 1, 4),
        torch.full((2, 1), -1),
        torch.zeros(2, 1, dtype=torch.bool),
    )
    assert (result.gt_inds == BACKGROUND).all()
    grids, anchors, strides = level_layout(priors)
    assert grids == [(8, 8), (4, 4)] and strides == [8.0, 16.0]
    assert anchors.tolist() == [[[8, 8], [20, 10]], [[24, 24], [60, 30]]]
    uneven = make_priors([(8, 8), (4, 4)], [8, 16], anchors=[[(8, 8)], [(24, 24), (60, 30)]])
    with pytest.raises(ValueError, match="same number of anchors"):
        level_layout(uneven)
    with pytest.raises(ValueError, match="anchor_t"):
        ASSIGNERS.build({"type": "YOLOv5Assigner", "anchor_t": 0.5})
