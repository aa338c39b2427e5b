import math

import pytest
import torch
from torch import nn

from detector.engine.ema import ModelEMA
from detector.engine.optim import build_optimizer, parameter_groups
from detector.engine.schedulers import WarmupCosineLR
from detector.errors import ConfigError


def small_model():
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))


def test_schedule_warmup_cosine_floor():
    opt = torch.optim.SGD(small_model().parameters(), lr=1.0)
    sched = WarmupCosineLR(opt, base_lr=0.1, total_iters=100, warmup_iters=10, min_lr_ratio=0.05, flat_iters=20)
    assert sched.lr_at(0) == 0.0
    assert sched.lr_at(5) == pytest.approx(0.1 * 0.25)  # quadratic warm-up
    assert sched.lr_at(10) == pytest.approx(0.1)
    assert sched.lr_at(45) == pytest.approx(0.005 + 0.5 * 0.095 * (1 + math.cos(math.pi * 35 / 70)))
    assert sched.lr_at(80) == pytest.approx(0.005) and sched.lr_at(99) == pytest.approx(0.005)
    assert sched.step(10) == pytest.approx(0.1) and opt.param_groups[0]["lr"] == pytest.approx(0.1)


def test_no_weight_decay_on_bn_and_biases():
    model = small_model()
    decay, no_decay = parameter_groups(model, 5e-4)
    assert decay["params"] == [model[0].weight, model[2].weight] and decay["weight_decay"] == 5e-4
    assert {id(p) for p in no_decay["params"]} == {id(model[1].weight), id(model[1].bias), id(model[2].bias)}
    assert no_decay["weight_decay"] == 0.0


def test_build_optimizer_kinds():
    sgd = build_optimizer(small_model(), {"type": "SGD", "momentum": 0.9, "nesterov": True}, lr=0.01)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    assert isinstance(build_optimizer(small_model(), {"type": "AdamW"}, lr=1e-3), torch.optim.AdamW)
    with pytest.raises(ConfigError, match="optimizer.type: 'Adam'; expected one of 'SGD', 'AdamW'"):
        build_optimizer(small_model(), {"type": "Adam"}, lr=1e-3)


def test_ema_decay_warms_up_and_tracks():
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    ema = ModelEMA(model, decay=0.9, tau=1.0)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    d1 = 0.9 * (1 - math.exp(-1))
    assert ema.module.weight.item() == pytest.approx(1 - d1)
    state = ema.state_dict()
    other = ModelEMA(nn.Linear(1, 1, bias=False))
    other.load_state_dict(state)
    assert other.updates == 1 and other.module.weight.item() == pytest.approx(1 - d1)
