"""Re-parameterised blocks: the fold equals the branches (both variants, with and without the
identity, stride 2, depthwise), a hand-computed fold, the merged box/objectness conv, the Rep
configs, and an exported Rep model with no branch left."""

import copy
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from detector import build_model, load_config
from detector.errors import ConfigError
from detector.export import export_onnx
from detector.models.heads.yolox_head import YOLOXHead
from detector.models.layers import Bottleneck, DepthwiseSeparableConv
from detector.models.rep import RepConv, fold_rep_convs, identity_kernel

VARIANTS = {"repvgg": False, "qarepvgg": True}


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Statistics and affine parameters far from the defaults, so that a fold that drops or
    misplaces any BN term shows in the outputs."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def set_batchnorm(bn: nn.BatchNorm2d, mean: float, var: float, gamma: float, beta: float) -> None:
    bn.eps = 0.0
    bn.running_mean.fill_(mean)
    bn.running_var.fill_(var)
    bn.weight.fill_(gamma)
    bn.bias.fill_(beta)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    ("c_in", "c_out", "stride", "groups", "identity"),
    [(8, 8, 1, 1, True), (8, 16, 1, 1, False), (8, 8, 2, 1, False), (16, 16, 1, 16, True), (16, 16, 2, 16, False)],
    ids=["identity", "wider", "stride2", "depthwise", "depthwise-stride2"],
)
def test_fold_equals_branches(variant, c_in, c_out, stride, groups, identity):
    torch.manual_seed(0)
    block = randomise_batchnorm(RepConv(c_in, c_out, stride, groups, quant_friendly=VARIANTS[variant])).eval()
    assert block.has_identity is identity
    assert (block.bn1x1 is None) == VARIANTS[variant] and (block.bn_post is None) != VARIANTS[variant]
    x = torch.randn(2, c_in, 15, 13)  # odd sizes: stride-2 padding at the borders counts
    with torch.no_grad():
        branches = block(x)
        assert block.fold() and not block.fold()
        folded = block(x)
    assert folded.shape == (2, c_out, (15 - 1) // stride + 1, (13 - 1) // stride + 1)
    assert (folded - branches).abs().max() < 1e-5
    assert branches.std() > 0.1  # a sensitive check: the outputs are not near-constant
    assert [name for name, _ in block.named_children()] == ["act", "conv"]
    assert block.conv.weight.shape == (c_out, c_in // groups, 3, 3) and block.conv.groups == groups


def test_fold_hand_computed_single_channel():
    """One channel, RepVGG: kernel = w3 * s3 + centre (w1 * s1 + s_id), bias = sum of shifts."""
    block = RepConv(1, 1, act="identity").eval()
    with torch.no_grad():
        block.conv3x3.weight.copy_(torch.arange(9.0).reshape(1, 1, 3, 3))
        block.conv1x1.weight.fill_(2.0)
        stats = ((1.0, 4.0, 2.0, 0.5), (0.0, 1.0, 3.0, -1.0), (2.0, 0.25, 1.0, 0.0))  # mean, var, gamma, beta
        for bn, values in zip((block.bn3x3, block.bn1x1, block.bn_identity), stats, strict=True):
            set_batchnorm(bn, *values)
    weight, bias = block.folded_kernel()
    # scales: 2 / 2 = 1, 3 / 1 = 3, 1 / 0.5 = 2; shifts: 0.5 - 1, -1 - 0, 0 - 2 * 2
    expected = torch.arange(9.0).reshape(1, 1, 3, 3)
    expected[0, 0, 1, 1] += 2.0 * 3 + 2
    assert torch.equal(weight, expected)
    assert bias.tolist() == [-0.5 - 1.0 - 4.0]


def test_qarepvgg_hand_computed_single_channel():
    """QARepVGG: kernel = s_post (w3 s3 + centre (w1 + 1)), bias = s_post shift3 + shift_post."""
    block = RepConv(1, 1, act="identity", quant_friendly=True).eval()
    with torch.no_grad():
        block.conv3x3.weight.fill_(1.0)
        block.conv1x1.weight.fill_(3.0)
        for bn, values in zip((block.bn3x3, block.bn_post), ((1.0, 1.0, 2.0, 1.0), (0.5, 4.0, 1.0, 0.25)), strict=True):
            set_batchnorm(bn, *values)
    weight, bias = block.folded_kernel()
    # s3 = 2, shift3 = 1 - 2 = -1; s_post = 0.5, shift_post = 0.25 - 0.25 = 0
    expected = torch.full((1, 1, 3, 3), 2.0)
    expected[0, 0, 1, 1] += 3.0 + 1.0
    assert torch.equal(weight, expected * 0.5)
    assert bias.tolist() == [-0.5]


def test_identity_kernel_is_the_identity_for_grouped_convs():
    x = torch.randn(1, 12, 5, 5)
    for groups in (1, 3, 12):
        kernel = identity_kernel(12, groups, x)
        assert kernel.shape == (12, 12 // groups, 3, 3)
        assert torch.equal(nn.functional.conv2d(x, kernel, padding=1, groups=groups), x)


def test_every_branch_is_trained():
    block = RepConv(8, 8).train()
    block(torch.randn(2, 8, 6, 6)).square().sum().backward()
    for name in ("conv3x3", "conv1x1", "bn3x3", "bn1x1", "bn_identity"):
        assert getattr(block, name).weight.grad.abs().sum() > 0, name


@pytest.mark.parametrize("variant", VARIANTS)
def test_bottleneck_block_setting(variant):
    plain = Bottleneck(16, 16, depthwise=True)
    rep = Bottleneck(16, 16, depthwise=True, block=variant)
    assert isinstance(plain.conv2, DepthwiseSeparableConv) and isinstance(rep.conv2, DepthwiseSeparableConv)
    assert isinstance(rep.conv2.dconv, RepConv) and rep.conv2.dconv.conv3x3.groups == 8  # hidden = 16 x 0.5
    assert isinstance(Bottleneck(16, 16, block=variant).conv2, RepConv)
    with pytest.raises(ValueError, match="unknown BLOCKS type 'rep'; did you mean 'repvgg', 'qarepvgg'"):
        Bottleneck(16, 16, block="rep")


@pytest.mark.parametrize("anchors", [None, [[[10, 13], [16, 30], [33, 23]]] * 3], ids=["anchor-free", "3-anchors"])
def test_merged_box_objectness_conv_equals_the_two(anchors):
    torch.manual_seed(0)
    head = YOLOXHead(num_classes=3, in_channels=[16, 32, 64], feat_channels=16, anchors=anchors).eval()
    for conv in (*head.reg_preds, *head.obj_preds):
        nn.init.normal_(conv.bias)
    features = [torch.randn(2, c, s, s) for c, s in ((16, 8), (32, 4), (64, 2))]
    with torch.no_grad():
        before = head(features)
        assert head.merge_box_obj_preds() and not head.merge_box_obj_preds()
        after = head(features)
    assert not hasattr(head, "reg_preds") and len(head.box_obj_preds) == 3
    assert head.box_obj_preds[0].out_channels == 5 * head.num_anchors
    for b, a in zip(before, after, strict=True):
        assert b.shape == a.shape and (b - a).abs().max() < 1e-6


@pytest.mark.parametrize("name", ["yolox_nano_rep_shapes", "yolox_s_rep"])
def test_rep_configs_fuse_to_the_plain_model(name):
    """A Rep config is the plain model plus branches; fused, it has exactly the plain model's
    parameter shapes, and its outputs equal the unfused model's."""
    cfg = load_config(name)
    plain_name = {"yolox_nano_rep_shapes": "yolox_nano_shapes", "yolox_s_rep": "yolox_s"}[name]
    assert cfg["model"]["backbone"]["block"] == cfg["model"]["neck"]["block"] == "qarepvgg"
    torch.manual_seed(0)
    model = randomise_batchnorm(build_model(cfg)).eval()
    plain = build_model(load_config(plain_name)).eval()
    assert sum(isinstance(m, RepConv) for m in model.modules()) > 0
    x = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        reference = model(x)
        fused = copy.deepcopy(model).fuse()
        assert fold_rep_convs(fused) == 0  # nothing left to fold
        out = fused(x)
    assert (out - reference).abs().max() < 1e-4 * reference.abs().max()
    shapes = Counter(tuple(p.shape) for p in fused.parameters())
    assert shapes == Counter(tuple(p.shape) for p in plain.fuse().parameters())


def test_unknown_block_is_a_config_error():
    with pytest.raises(ConfigError, match=r"model\.neck: PAFPN cannot .*block: unknown BLOCKS type 'qarep'"):
        load_config("yolox_s", overrides={"model.neck.block": "qarep"})


def test_exported_rep_model_has_no_branch_left(tmp_path):
    """The ONNX graph of a Rep model has exactly the plain model's operators (no BatchNorm, no
    extra Add), and ONNX Runtime reproduces the unfused PyTorch outputs."""
    torch.manual_seed(0)
    rep = randomise_batchnorm(build_model(load_config("yolox_nano_rep_shapes"))).eval()
    x = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        reference = copy.deepcopy(rep)(x).numpy()  # a copy: a forward caches the head's priors
    counts = {}
    plain = randomise_batchnorm(build_model(load_config("yolox_nano_shapes")))
    # (Both with random statistics: the exporter aliases equal initialisers through Identity nodes.)
    for name, model in (("rep", rep), ("plain", plain)):
        path = export_onnx(copy.deepcopy(model), tmp_path / f"{name}.onnx", imgsz=64)
        counts[name] = Counter(node.op_type for node in onnx.load(str(path)).graph.node)
    assert counts["rep"] == counts["plain"]
    assert "BatchNormalization" not in counts["rep"]
    # Three head levels, one merged box/objectness conv each: 3 fewer convs than unmerged heads.
    assert counts["rep"]["Conv"] == sum(isinstance(m, nn.Conv2d) for m in copy.deepcopy(rep).fuse().modules())
    session = ort.InferenceSession(str(tmp_path / "rep.onnx"), providers=["CPUExecutionProvider"])
    out = session.run(None, {"images": x.numpy()})[0]
    np.testing.assert_allclose(out, reference, atol=1e-3 * np.abs(reference).max(), rtol=0)
