"""Structured pruning: coupled channels removed together (checked against a masked copy of the
unpruned model, independently of the dependency graph), the kept counts (ratio, rounding, minimum),
the criteria picking dead channels, the FLOPs target, and the channel layout's round trip."""

import copy

import pytest
import torch
from torch import nn

from detector import build_model, load_config
from detector.compress.layout import apply_channel_layout, read_channel_layout
from detector.compress.prune import (
    accumulate_loss_gradients,
    kept_count,
    prune_channels,
    ratio_for_flops,
)
from detector.errors import ConfigError
from detector.models.rep import RepConv

#: Small versions of every architecture family: depthwise (Nano), dense (S-style), Rep blocks
#: (plain and quantisation-friendly), YOLOv5-style anchors with a Darknet-53 backbone.
ARCHITECTURES = {
    "nano": ("yolox_nano_shapes", {}),
    "dense": ("yolox_s", {"model.backbone.width": 0.25, "model.backbone.depth": 0.33, "model.head.num_classes": 3}),
    "repvgg": ("yolox_nano_shapes", {"model.backbone.block": "repvgg", "model.neck.block": "repvgg"}),
    "qarepvgg": ("yolox_nano_rep_shapes", {}),
    "yolov5": ("yolov5_nano_style_shapes", {}),
}


def model_of(name):
    config, overrides = ARCHITECTURES[name]
    cfg = load_config(config, overrides=overrides)
    torch.manual_seed(0)
    return cfg, build_model(cfg)


def mark_batchnorms(model):
    """Distinct random statistics and affine terms in every BatchNorm: its surviving entries after
    pruning tell which channels were kept. Conv weights at He scale and small means keep the
    activations input-dependent through the depth (so that a misrouted channel shows)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            m.weight.data.normal_(0, (2 / fan_in) ** 0.5)
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn_like(m.running_mean) * 0.01)
            m.running_var.copy_(torch.rand_like(m.running_var) + 0.5)
            m.weight.data.copy_(torch.rand_like(m.weight) + 0.5)
            m.bias.data.copy_(torch.randn_like(m.bias) * 0.1)


def raw_outputs(model, x):
    """The head's raw maps (logits, box offsets), flattened into one [B, N] tensor."""
    return torch.cat([o.flatten(1) for o in model.head(model.features(x))], dim=1)


def masked_original(original, pruned):
    """``original`` with every BatchNorm channel that pruning removed silenced (gamma = beta = 0: the
    channel outputs exactly zero through SiLU/ReLU, max-pooling and upsampling). If pruning removed
    coupled channels consistently, the masked original computes what the pruned model computes."""
    masked = copy.deepcopy(original)
    pruned_modules = dict(pruned.named_modules())
    for name, m in masked.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            kept_means = pruned_modules[name].running_mean
            keep = torch.zeros(m.num_features, dtype=torch.bool)
            for value in kept_means:
                keep |= m.running_mean == value
            assert int(keep.sum()) == len(kept_means), name
            m.weight.data[~keep] = 0
            m.bias.data[~keep] = 0
    return masked


@pytest.mark.parametrize("name", list(ARCHITECTURES))
@pytest.mark.parametrize("global_ratio", [False, True])
def test_pruned_model_equals_the_masked_original(name, global_ratio):
    cfg, model = model_of(name)
    mark_batchnorms(model)
    model.eval()
    original = copy.deepcopy(model)
    result = prune_channels(model, 0.4, "l2", global_ratio=global_ratio, round_to=4, min_channels=4, imgsz=128)
    assert result.params_after < 0.8 * result.params_before and result.flops_after < 0.8 * result.flops_before
    x = torch.rand(2, 3, 128, 160)
    with torch.no_grad():
        expected = raw_outputs(masked_original(original, model), x)
        got = raw_outputs(model, x)
        assert model(x).shape == original(x).shape
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()
    # The predictions keep their widths; depthwise convs stay depthwise.
    for before, after in zip(original.head.prediction_convs(), model.head.prediction_convs(), strict=True):
        assert after.out_channels == before.out_channels
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.groups > 1:
            assert m.groups == m.in_channels == m.out_channels


def test_kept_counts_per_layer_are_rounded_and_bounded():
    assert kept_count(64, 0.5, 8, 8) == 32
    assert kept_count(64, 0.3, 8, 8) == 48  # 64 - 19 = 45 -> 48
    assert kept_count(16, 0.7, 8, 8) == 8  # 16 - 11 = 5 -> 8
    assert kept_count(16, 0.7, 1, 3) == 5
    assert kept_count(12, 0.9, 8, 8) == 8
    assert kept_count(6, 0.5, 8, 8) == 6  # never more than there are
    assert kept_count(64, 0.0, 8, 8) == 64
    _, model = model_of("dense")
    original_widths = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    result = prune_channels(model, 0.5, round_to=8, min_channels=16)
    for root, (kept, total) in result.groups.items():
        assert kept == min(total, max(16, -(-(total - total // 2) // 8) * 8)), root
    for n, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and m.out_channels != original_widths[n]:
            assert m.out_channels % 8 == 0 and m.out_channels >= 16, n


def plant_dead_channels(model, dead):
    """Channels ``dead`` of the first CSP bottleneck's hidden conv: zero weights in, zero weights
    out (its BatchNorm's gamma and beta, the next conv's input columns); a group of its own."""
    bottleneck = model.backbone.dark3[1].m[0]
    conv_in, conv_out = bottleneck.conv1, bottleneck.conv2
    with torch.no_grad():
        conv_in.conv.weight[dead] = 0
        conv_in.bn.weight[dead] = 0
        conv_in.bn.bias[dead] = 0
        conv_out.conv.weight[:, dead] = 0
    return "backbone.dark3.1.m.0.conv1.conv", conv_in.conv.out_channels


@pytest.mark.parametrize("criterion", ["l2", "bn", "taylor"])
def test_each_criterion_removes_the_dead_channels_first(criterion):
    _, model = model_of("dense")
    root, width = plant_dead_channels(model, dead=[1, 4, 5, 6])
    if criterion == "taylor":
        with pytest.raises(ValueError, match="needs the loss gradients"):
            prune_channels(copy.deepcopy(model), 0.25, criterion)
        batch = {"images": torch.rand(2, 3, 64, 64) * 255,
                 "targets": torch.tensor([[0, 1, 4.0, 6, 40, 50], [1, 2, 10, 10, 30, 60]])}  # fmt: skip
        bn_before = copy.deepcopy([b.clone() for b in model.buffers()])
        assert accumulate_loss_gradients(model, [batch, batch]) == 2
        assert all(torch.equal(a, b) for a, b in zip(bn_before, model.buffers(), strict=True))  # eval mode
    model.eval()
    original = copy.deepcopy(model)
    result = prune_channels(model, 4 / width, criterion, round_to=1, min_channels=1, imgsz=64)
    assert result.groups[root] == (width - 4, width)
    bottleneck = model.backbone.dark3[1].m[0]
    assert bottleneck.conv1.conv.out_channels == width - 4
    # The dead channels went in that group (the other groups lost live ones: compare the group only).
    kept_gamma = bottleneck.conv1.bn.weight
    assert bool((kept_gamma != 0).all())
    assert all(p.grad is None for p in model.parameters())
    assert original is not model


def test_flops_target_is_approached_and_the_model_left_alone():
    _, model = model_of("dense")
    before = copy.deepcopy(model.state_dict())
    ratio, fraction = ratio_for_flops(model, 0.5, round_to=1, min_channels=1, imgsz=64)
    assert abs(fraction - 0.5) < 0.05 and 0.2 < ratio < 0.5
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match=r"flops fraction: 1.5"):
        ratio_for_flops(model, 1.5)


def test_bad_settings_are_refused():
    _, model = model_of("nano")
    with pytest.raises(ValueError, match="criterion: unknown 'l1'; expected one of l2, bn, taylor"):
        prune_channels(model, 0.3, "l1")
    with pytest.raises(ValueError, match=r"ratio: 1.0; expected a fraction"):
        prune_channels(model, 1.0)


@pytest.mark.parametrize("name", ["nano", "repvgg"])
def test_channel_layout_rebuilds_the_slim_model_from_plain_data(name, tmp_path):
    cfg, model = model_of(name)
    prune_channels(model, 0.5, round_to=4, min_channels=4)
    with torch.device("meta"):
        reference = build_model(cfg)
    layout = read_channel_layout(model, reference)
    assert layout and all(isinstance(w, list) and all(type(c) is int for c in w) for w in layout.values())
    path = tmp_path / "pruned.pt"
    slim_cfg = copy.deepcopy(cfg)
    slim_cfg["model"]["channel_layout"] = layout
    torch.save({"config": slim_cfg, "model": model.state_dict()}, path)
    state = torch.load(path, weights_only=True)  # plain data only: no pickled modules
    rebuilt = build_model(state["config"])
    rebuilt.load_state_dict(state["model"])  # strict: every shape agrees
    x = torch.rand(1, 3, 96, 96) * 255
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), model.eval()(x))
        # The rebuilt model folds for inference like any other (Rep branches, BN, head merge).
        fused = copy.deepcopy(rebuilt).fuse()
        assert torch.allclose(fused(x), model(x), atol=1e-3, rtol=1e-4)
    if name == "repvgg":
        assert any(isinstance(m, RepConv) for m in rebuilt.modules())


def test_channel_layout_errors_name_the_entry():
    cfg, _ = model_of("nano")
    for layout, message in [
        ({"backbone.nope.conv": [3, 8]}, "model.channel_layout: backbone.nope.conv: not a Conv2d or BatchNorm2d"),
        (
            {"backbone.stem.conv.bn": [8, 8]},
            r"backbone.stem.conv.bn: \[8, 8\]; a BatchNorm's width is \[num_features\]",
        ),
        ({"backbone.stem.conv.conv": [12, 0]}, r"backbone.stem.conv.conv: \[12, 0\]; expected a list of positive"),
        ({"backbone.dark2.0.dconv.conv": [16, 8]}, "a depthwise conv keeps in_channels == out_channels"),
    ]:
        bad = copy.deepcopy(cfg)
        bad["model"]["channel_layout"] = layout
        with pytest.raises(ConfigError, match=message):
            build_model(bad)
    model = build_model(cfg)
    other = apply_channel_layout(build_model(cfg), {"backbone.stem.conv.conv": [12, 8], "backbone.stem.conv.bn": [8]})
    assert read_channel_layout(other, model) == {"backbone.stem.conv.conv": [12, 8], "backbone.stem.conv.bn": [8]}
