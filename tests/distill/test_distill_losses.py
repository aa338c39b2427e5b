"""Distillation losses against hand-computed values on tiny tensors; adapters only where the
channel counts differ; the config checks of distill.losses."""

import math

import pytest
import torch
from torch import nn

from detector import load_config
from detector.distill import (
    ChannelWiseDistillation,
    DistillInputs,
    NormalizedFeatureMSE,
    OutputDistillation,
    build_distill_losses,
)
from detector.distill.losses import FeatureDistillation, binary_kl_with_logits
from detector.errors import ConfigError


def maps(*values):
    """One image, one channel, the values as a 1 x N map."""
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, 1, -1)


def test_cwd_is_the_kl_of_spatial_softmaxes_times_t_squared():
    # teacher logits (0, ln 3): softmax (1/4, 3/4); student (0, 0): (1/2, 1/2)
    student, teacher = maps(0.0, 0.0), maps(0.0, math.log(3.0))
    loss = ChannelWiseDistillation([1], [1], temperature=1.0)
    expected = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    value = loss(DistillInputs([student]), DistillInputs([teacher]))[""]
    assert value.item() == pytest.approx(expected, rel=1e-6)
    # T = 2: teacher (0, ln 3 / 2) -> softmax (1 / (1 + sqrt 3), sqrt 3 / (1 + sqrt 3)), times T^2 = 4
    hot = ChannelWiseDistillation([1], [1], temperature=2.0)
    p = 1.0 / (1.0 + math.sqrt(3.0))
    expected_t2 = 4.0 * (p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5))
    assert hot(DistillInputs([student]), DistillInputs([teacher]))[""].item() == pytest.approx(expected_t2, rel=1e-6)
    # equal maps: zero; two levels: the sum
    assert loss(DistillInputs([teacher]), DistillInputs([teacher]))[""].item() == pytest.approx(0.0, abs=1e-7)
    two = ChannelWiseDistillation([1, 1], [1, 1])
    both = two(DistillInputs([student, teacher]), DistillInputs([teacher, teacher]))[""]
    assert both.item() == pytest.approx(expected, rel=1e-6)


def test_normalised_mse_ignores_scale_and_offset_and_is_two_for_opposites():
    teacher = maps(1.0, 2.0, 3.0, 4.0)
    loss = NormalizedFeatureMSE([1], [1])
    same_shape = loss(DistillInputs([teacher * 5.0 + 7.0]), DistillInputs([teacher]))[""]
    assert same_shape.item() == pytest.approx(0.0, abs=1e-6)
    opposite = loss(DistillInputs([-teacher]), DistillInputs([teacher]))[""]
    assert opposite.item() == pytest.approx(2.0, rel=1e-5)  # 0.5 * mean((z + z)^2), mean z^2 = 1
    # (1, 2, 3, 4) against (1, 2, 4, 3): 1 - Pearson r, r = 0.8
    swapped = loss(DistillInputs([maps(1.0, 2.0, 4.0, 3.0)]), DistillInputs([teacher]))[""]
    assert swapped.item() == pytest.approx(1.0 - 0.8, rel=1e-4)


def test_binary_kl_hand_computed():
    # target 0.5, student logit ln 3 (p = 3/4): 0.5 ln(0.5 / 0.75) + 0.5 ln(0.5 / 0.25)
    value = binary_kl_with_logits(torch.tensor([math.log(3.0)]), torch.tensor([0.5]))
    assert value.item() == pytest.approx(0.5 * math.log(2 / 3) + 0.5 * math.log(2.0), rel=1e-5)
    same = binary_kl_with_logits(torch.tensor([0.3, -2.0]), torch.tensor([0.3, -2.0]).sigmoid())
    assert same.abs().max().item() < 1e-6


def flat(obj, cls):
    """[1, P, 5 + 1]: zero box outputs, the given objectness and class logits per prior."""
    p = len(obj)
    out = torch.zeros(1, p, 6)
    out[0, :, 4] = torch.tensor(obj)
    out[0, :, 5] = torch.tensor(cls)
    return out


def test_output_distillation_hand_computed():
    # Two priors. Teacher objectness logits (ln 3, -ln 3): probabilities 3/4 and 1/4, sum 1.
    teacher = DistillInputs([], flat([math.log(3.0), -math.log(3.0)], [0.0, 0.0]))
    student = DistillInputs([], flat([0.0, 0.0], [math.log(3.0), 0.0]))
    boxes = torch.tensor([[[1.0, 1.0, 2.0, 2.0], [5.0, 5.0, 2.0, 2.0]]])
    teacher.boxes = boxes
    student.boxes = torch.tensor([[[2.0, 1.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]]])
    student.positives = torch.tensor([[True, False]])
    parts = OutputDistillation(temperature=1.0)(student, teacher)

    def kl(q, p):  # KL(Bernoulli(q) || Bernoulli(p))
        return q * math.log(q / p) + (1 - q) * math.log((1 - q) / (1 - p))

    # obj: both priors, student p = 1/2, over the teacher's objectness total 1
    assert parts["obj"].item() == pytest.approx(kl(0.75, 0.5) + kl(0.25, 0.5), rel=1e-5)
    # cls: teacher 1/2 on both; student 3/4 on prior 0 (weight 3/4), 1/2 on prior 1 (KL 0)
    assert parts["cls"].item() == pytest.approx(0.75 * kl(0.5, 0.75), rel=1e-5)
    # box, prior 0 only: [0, 0, 2, 2] against [1, 0, 3, 2]: IoU 2/6, enclosing area = union: GIoU 1/3
    assert parts["box"].item() == pytest.approx(2.0 / 3.0, rel=1e-5)
    # part weights and the temperature's T^2 (with equal outputs every part is zero)
    weighted = OutputDistillation(cls_weight=0.0, obj_weight=2.0, box_weight=0.5)(student, teacher)
    assert weighted["cls"].item() == 0.0
    assert weighted["obj"].item() == pytest.approx(2.0 * parts["obj"].item(), rel=1e-6)
    assert weighted["box"].item() == pytest.approx(1.0 / 3.0, rel=1e-5)
    same = OutputDistillation(temperature=3.0)(teacher, teacher)
    assert same["obj"].item() == pytest.approx(0.0, abs=1e-6) and same["cls"].item() == pytest.approx(0.0, abs=1e-6)


def test_output_distillation_gradients_reach_the_student_only():
    teacher = DistillInputs([], flat([1.0, -1.0], [0.5, -0.5]), torch.rand(1, 2, 4) + 1)
    s_flat = flat([0.0, 0.0], [0.0, 0.0]).requires_grad_()
    s_boxes = (torch.rand(1, 2, 4) + 1).requires_grad_()
    student = DistillInputs([], s_flat, s_boxes, torch.tensor([[True, True]]))
    sum(OutputDistillation()(student, teacher).values()).backward()
    assert s_flat.grad[..., 4:].abs().sum() > 0 and s_boxes.grad.abs().sum() > 0


def test_adapters_only_where_channels_differ():
    loss = ChannelWiseDistillation([16, 32, 64], [16, 48, 64])
    assert isinstance(loss.adapters[0], nn.Identity) and isinstance(loss.adapters[2], nn.Identity)
    assert isinstance(loss.adapters[1], nn.Conv2d) and loss.adapters[1].weight.shape == (48, 32, 1, 1)
    assert sum(p.numel() for p in ChannelWiseDistillation([8, 8], [8, 8]).parameters()) == 0
    adapted = loss(
        DistillInputs([torch.randn(2, c, 4, 4) for c in (16, 32, 64)]),
        DistillInputs([torch.randn(2, c, 4, 4) for c in (16, 48, 64)]),
    )[""]
    assert adapted.ndim == 0 and adapted > 0


def test_maps_of_other_sizes_are_refused():
    with pytest.raises(ValueError, match=r"neck level 0: student map \(4, 4\) but teacher map \(8, 8\)"):
        NormalizedFeatureMSE([1], [1])(
            DistillInputs([torch.randn(1, 1, 4, 4)]), DistillInputs([torch.randn(1, 1, 8, 8)])
        )


def test_build_names_the_losses():
    cfgs = [{"type": "ChannelWiseDistillation", "temperature": 2.0}, {"type": "OutputDistillation", "weight": 0.5},
            {"type": "ChannelWiseDistillation"}]  # fmt: skip
    losses, names = build_distill_losses(cfgs, [8, 16], [8, 24])
    assert names == ["distill_cwd", "distill_out", "distill_cwd2"]
    assert losses[0].temperature == 2.0 and losses[1].weight == 0.5 and isinstance(losses[2].adapters[1], nn.Conv2d)


TEACHER = {"distill.teacher": {"ckpt": "t.pt"}}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"distill.teacher": {"ckp": "t"}}, "distill.teacher.ckp: unknown key; did you mean 'distill.teacher.ckpt'?"),
        ({"distill.teacher": {"config": "s"}}, "distill.teacher.ckpt: missing; expected the teacher's checkpoint"),
        ({"distill.weight_schedule": "linear"}, "distill.weight_schedule"),
        ({**TEACHER, "distill.losses": [{"type": "CWD"}]},
         "distill.losses[0].type: unknown DISTILL_LOSSES type 'CWD'"),
        ({**TEACHER, "distill.losses": [{"type": "ChannelWiseDistillation", "temprature": 2}]},
         "distill.losses[0].temprature: ChannelWiseDistillation has no argument 'temprature'; did you mean "
         "'temperature'?"),
        ({**TEACHER, "distill.losses": [{"type": "NormalizedFeatureMSE", "student_channels": [8]}]},
         "distill.losses[0].student_channels: set from the two networks' necks"),
        ({**TEACHER, "distill.losses": []}, "distill.losses: empty"),
    ],
)  # fmt: skip
def test_distill_config_errors_name_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config("yolox_nano_shapes", overrides=override)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_feature_loss_without_level_loss_names_the_class():
    class Unfinished(FeatureDistillation):
        pass

    loss = Unfinished([4], [4])
    x = torch.zeros(1, 4, 2, 2)
    with pytest.raises(NotImplementedError, match=r"Unfinished does not define level_loss\(student, teacher\)"):
        loss(DistillInputs([x]), DistillInputs([x]))
