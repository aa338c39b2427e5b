import pytest
import torch

from detector.ops.boxes import cxcywh_to_xyxy, xywh_to_xyxy, xyxy_to_cxcywh, xyxy_to_xywh
from detector.ops.priors import decode_yolox_boxes, make_priors, prior_centers


def test_box_conversions_round_trip():
    xyxy = torch.tensor([[10.0, 20.0, 50.0, 80.0]])
    assert xyxy_to_cxcywh(xyxy).tolist() == [[30.0, 50.0, 40.0, 60.0]]
    assert xyxy_to_xywh(xyxy).tolist() == [[10.0, 20.0, 40.0, 60.0]]
    assert torch.equal(cxcywh_to_xyxy(xyxy_to_cxcywh(xyxy)), xyxy)
    assert torch.equal(xywh_to_xyxy(xyxy_to_xywh(xyxy)), xyxy)
    batch = torch.rand(2, 7, 4)
    assert cxcywh_to_xyxy(batch).shape == (2, 7, 4)


def test_priors_order_and_anchor_sizes():
    priors = make_priors([(2, 3), (1, 2)], [8, 16])
    assert priors.shape == (8, 5)
    assert priors[:6, :3].tolist() == [[x, y, 8.0] for y in range(2) for x in range(3)]
    assert priors[6:, :3].tolist() == [[0.0, 0.0, 16.0], [1.0, 0.0, 16.0]]
    assert priors[:, 3:].tolist() == [[8.0, 8.0]] * 6 + [[16.0, 16.0]] * 2
    assert prior_centers(priors)[4].tolist() == [12.0, 12.0]

    anchored = make_priors([(1, 2)], [32], anchors=[[(10, 13), (16, 30)]])
    assert anchored.tolist() == [
        [0, 0, 32, 10, 13],
        [1, 0, 32, 10, 13],
        [0, 0, 32, 16, 30],
        [1, 0, 32, 16, 30],
    ]
    with pytest.raises(ValueError, match="2 feature maps but 1 strides"):
        make_priors([(1, 1), (1, 1)], [8])


def test_decode_yolox_boxes():
    priors = make_priors([(1, 2)], [16])
    raw = torch.tensor([[0.5, 0.25, 0.0, torch.log(torch.tensor(2.0))]] * 2)
    assert decode_yolox_boxes(raw, priors).tolist() == [[8.0, 4.0, 16.0, 32.0], [24.0, 4.0, 16.0, 32.0]]
