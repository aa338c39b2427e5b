"""SimOTA assignment: parity with YOLOX's get_assignments (fixture) and hand-made cases."""

import pytest
import torch
import torch.nn.functional as F

from detector.assigners import SimOTAAssigner, SimOTAResult, assign_simota
from detector.ops.priors import make_priors, prior_centers
from detector.registry import ASSIGNERS

NUM_CASES = 20


@pytest.fixture(scope="module")
def oracle(fixtures_dir):
    cases = torch.load(fixtures_dir / "simota_oracle.pt", weights_only=True)
    assert len(cases) == NUM_CASES
    return cases


def case_arguments(case):
    """Our arguments from YOLOX's inputs: priors rebuilt from the cell indices and strides."""
    inputs = case["inputs"]
    strides = inputs["expanded_strides"][0]
    priors = torch.stack([inputs["x_shifts"][0], inputs["y_shifts"][0], strides, strides, strides], dim=1)
    return dict(
        gt_boxes=inputs["gt_bboxes_per_image"],
        gt_labels=inputs["gt_classes"].long(),
        pred_boxes=inputs["bboxes_preds_per_image"],
        cls_logits=inputs["cls_preds"][0],
        obj_logits=inputs["obj_preds"][0],
        priors=priors,
        num_classes=inputs["num_classes"],
    )


@pytest.mark.parametrize("index", range(NUM_CASES))
def test_matches_yolox_fixture(oracle, index):
    expected = oracle[index]["outputs"]
    result = assign_simota(**case_arguments(oracle[index]))
    assert torch.equal(result.fg_mask, expected["fg_mask"])
    assert torch.equal(result.matched_gt_inds, expected["matched_gt_inds"])
    assert torch.equal(result.matched_labels.to(expected["gt_matched_classes"].dtype), expected["gt_matched_classes"])
    assert result.num_fg == expected["num_fg"]
    torch.testing.assert_close(result.matched_ious, expected["pred_ious_this_matching"], atol=1e-6, rtol=0)


def test_result_types_and_consistency(oracle):
    result = assign_simota(**case_arguments(oracle[7]))  # 30 gts, several priors claimed twice
    assert isinstance(result, SimOTAResult)
    assert result.fg_mask.dtype == torch.bool
    assert result.matched_gt_inds.dtype == result.matched_labels.dtype == torch.long
    assert result.matched_ious.dtype == torch.float32
    assert isinstance(result.num_fg, int)
    assert result.num_fg == int(result.fg_mask.sum()) == result.matched_gt_inds.numel()


def test_obj_logits_flat_or_column_and_autocast(oracle):
    args = case_arguments(oracle[6])
    reference = assign_simota(**args)
    flat = assign_simota(**{**args, "obj_logits": args["obj_logits"][:, 0]})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = assign_simota(**args)
    for other in (flat, autocast):
        assert torch.equal(other.fg_mask, reference.fg_mask)
        assert torch.equal(other.matched_gt_inds, reference.matched_gt_inds)
        assert torch.equal(other.matched_ious, reference.matched_ious)


def test_registered_assigner_delegates(oracle):
    args = case_arguments(oracle[3])
    assigner = ASSIGNERS.build({"type": "SimOTAAssigner", "center_radius": 2.5})
    assert isinstance(assigner, SimOTAAssigner)
    num_gt = args["gt_boxes"].shape[0]
    result = assigner(
        args["priors"],
        args["pred_boxes"][None],
        args["cls_logits"][None],
        args["obj_logits"][None, :, 0],
        args["gt_boxes"][None],
        args["gt_labels"][None],
        torch.ones(1, num_gt, dtype=torch.bool),
    )
    expected = assign_simota(**args, center_radius=2.5)
    assert torch.equal(result.fg_mask[0], expected.fg_mask)
    assert torch.equal(result.gt_inds[0][expected.fg_mask], expected.matched_gt_inds)
    assert torch.equal(result.labels[0][expected.fg_mask], expected.matched_labels)
    # The IoU quality is recomputed per pair with the same arithmetic: bit-equal.
    assert torch.equal(result.quality[0][expected.fg_mask], expected.matched_ious)


@pytest.fixture(scope="module")
def priors_640():
    return make_priors([(80, 80), (40, 40), (20, 20)], [8, 16, 32])


def random_predictions(priors, num_classes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    num = priors.shape[0]
    centers = prior_centers(priors) + torch.randn(num, 2, generator=generator) * priors[:, 2:3]
    sizes = priors[:, 2:3] * torch.exp(torch.randn(num, 2, generator=generator))
    pred_boxes = torch.cat([centers, sizes], dim=1)
    cls_logits = torch.randn(num, num_classes, generator=generator)
    obj_logits = torch.randn(num, 1, generator=generator)
    return pred_boxes, cls_logits, obj_logits


def test_single_gt_gets_positives_near_its_centre(priors_640):
    pred_boxes, cls_logits, obj_logits = random_predictions(priors_640, 3)
    gt = torch.tensor([[200.0, 300.0, 50.0, 80.0]])
    result = assign_simota(gt, torch.tensor([2]), pred_boxes, cls_logits, obj_logits, priors_640, 3)
    assert result.num_fg >= 1
    assert (result.matched_gt_inds == 0).all() and (result.matched_labels == 2).all()
    offset = (prior_centers(priors_640[result.fg_mask]) - gt[:, :2]).abs()
    assert (offset < 1.5 * priors_640[result.fg_mask, 2:3]).all()


def test_tiny_ious_still_give_one_positive(priors_640):
    pred_boxes, cls_logits, obj_logits = random_predictions(priors_640, 1)
    pred_boxes[:, 2:] = 0.5  # every prediction far smaller than the gt: IoUs sum below 1, so k = 1
    gt = torch.tensor([[320.0, 320.0, 100.0, 100.0]])
    result = assign_simota(gt, torch.tensor([0]), pred_boxes, cls_logits, obj_logits, priors_640, 1)
    assert result.num_fg == 1


def cost(gt_box, label, pred_box, cls_logits, obj_logit, num_classes):
    """The pair cost written out for one (gt, prior) inside the gt's square."""
    from detector.ops.boxes import box_iou_cxcywh

    prob = (cls_logits.sigmoid() * obj_logit.sigmoid()).sqrt()
    cls_cost = F.binary_cross_entropy(prob, F.one_hot(torch.tensor(label), num_classes).float(), reduction="sum")
    return cls_cost - 3.0 * torch.log(box_iou_cxcywh(gt_box[None], pred_box[None])[0, 0] + 1e-8)


@pytest.mark.parametrize("favoured", [0, 1])
def test_shared_prior_goes_to_the_lower_cost_gt(favoured):
    # One prior (cell (5, 5), stride 8, centre (44, 44)) inside both gts' squares; both gts have
    # k = 1 and take it. The class logits decide which gt is cheaper, whatever the gt order.
    priors = torch.tensor([[5.0, 5.0, 8.0, 8.0, 8.0]])
    gts = torch.tensor([[44.0, 44.0, 20.0, 20.0], [46.0, 46.0, 20.0, 20.0]])
    labels = torch.tensor([0, 1])
    pred_boxes = torch.tensor([[45.0, 45.0, 20.0, 20.0]])
    cls_logits = torch.full((1, 2), -8.0)
    cls_logits[0, favoured] = 8.0
    obj_logits = torch.tensor([4.0])
    costs = [cost(gts[g], int(labels[g]), pred_boxes[0], cls_logits[0], obj_logits[0], 2) for g in range(2)]
    assert int(torch.stack(costs).argmin()) == favoured
    result = assign_simota(gts, labels, pred_boxes, cls_logits, obj_logits, priors, 2)
    assert result.num_fg == 1
    assert result.matched_gt_inds.tolist() == [favoured]
    assert result.matched_labels.tolist() == [favoured]
    iou = 19.0 * 19.0 / (2 * 400.0 - 19.0 * 19.0)  # 20 px boxes, prediction 1 px off both gts in x and y
    torch.testing.assert_close(result.matched_ious, torch.tensor([iou]))


def test_gt_with_large_k_takes_candidates_outside_its_square():
    # As in YOLOX, k and the cost top-k range over the union of all gts' candidates. Gt 0's square
    # holds prior 0 only, gt 1's holds priors 1 and 2. Every prediction equals gt 0's box, so gt 0
    # has k = 3 and also takes priors 1 and 2 at cost + 1e6; gt 1 (k = 1) takes prior 1, which it
    # keeps because its cost is lower, and prior 2 stays with gt 0.
    priors = torch.tensor([[2.0, 2.0, 8.0, 8.0, 8.0], [10.0, 2.0, 8.0, 8.0, 8.0], [11.0, 2.0, 8.0, 8.0, 8.0]])
    gts = torch.tensor([[20.0, 20.0, 16.0, 16.0], [88.0, 20.0, 16.0, 16.0]])
    pred_boxes = gts[:1].expand(3, 4)
    cls_logits = torch.tensor([[4.0, -4.0], [-4.0, 4.0], [4.0, -4.0]])
    result = assign_simota(gts, torch.tensor([0, 1]), pred_boxes, cls_logits, torch.zeros(3), priors, 2)
    assert result.fg_mask.tolist() == [True, True, True]
    assert result.matched_gt_inds.tolist() == [0, 1, 0]
    assert result.matched_ious.tolist() == [1.0, 0.0, 1.0]


def test_no_gt_gives_no_positives(priors_640):
    pred_boxes, cls_logits, obj_logits = random_predictions(priors_640, 4)
    result = assign_simota(
        torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), pred_boxes, cls_logits, obj_logits, priors_640, 4
    )
    assert result.num_fg == 0
    assert result.fg_mask.shape == (priors_640.shape[0],) and not result.fg_mask.any()
    assert result.matched_gt_inds.shape == result.matched_labels.shape == result.matched_ious.shape == (0,)


def test_gt_far_outside_the_image_gives_no_positives(priors_640):
    pred_boxes, cls_logits, obj_logits = random_predictions(priors_640, 4)
    gt = torch.tensor([[5000.0, 5000.0, 10.0, 10.0]])
    result = assign_simota(gt, torch.tensor([1]), pred_boxes, cls_logits, obj_logits, priors_640, 4)
    assert result.num_fg == 0 and not result.fg_mask.any()


def test_inputs_with_gradients_are_not_tracked(oracle):
    args = case_arguments(oracle[2])
    args["cls_logits"] = args["cls_logits"].clone().requires_grad_(True)
    result = assign_simota(**args)
    assert not result.matched_ious.requires_grad


def test_shape_errors(priors_640):
    pred_boxes, cls_logits, obj_logits = random_predictions(priors_640, 4)
    gt, labels = torch.tensor([[100.0, 100.0, 10.0, 10.0]]), torch.tensor([0])
    with pytest.raises(ValueError, match="cls_logits"):
        assign_simota(gt, labels, pred_boxes, cls_logits, obj_logits, priors_640, 5)
    with pytest.raises(ValueError, match="pred_boxes"):
        assign_simota(gt, labels, pred_boxes[:10], cls_logits, obj_logits, priors_640, 4)
