import pytest
import torch
from torch import nn

from detector.models.layers import (
    SPP,
    SPPF,
    Bottleneck,
    ConvBNAct,
    CSPLayer,
    DepthwiseSeparableConv,
    Focus,
    fuse_conv_bn,
    make_activation,
)


def test_activations_by_name():
    assert isinstance(make_activation("silu"), nn.SiLU)
    assert isinstance(make_activation("relu"), nn.ReLU)
    lrelu = make_activation("lrelu")
    assert isinstance(lrelu, nn.LeakyReLU) and lrelu.negative_slope == 0.1
    with pytest.raises(ValueError, match="unknown activation 'gelu'; expected one of silu, relu, lrelu, identity"):
        make_activation("gelu")


def test_conv_bn_act_same_padding_and_stride():
    layer = ConvBNAct(3, 8, 3, 2)
    assert layer(torch.rand(1, 3, 32, 48)).shape == (1, 8, 16, 24)
    assert layer.conv.bias is None
    assert (layer.bn.eps, layer.bn.momentum) == (1e-3, 0.03)


def test_depthwise_separable_conv_is_grouped():
    layer = DepthwiseSeparableConv(16, 32, 3, 2)
    assert layer.dconv.conv.groups == 16 and layer.dconv.conv.weight.shape == (16, 1, 3, 3)
    assert layer.pconv.conv.weight.shape == (32, 16, 1, 1)
    assert layer(torch.rand(1, 16, 8, 8)).shape == (1, 32, 4, 4)


def test_bottleneck_residual_only_when_shapes_agree():
    assert Bottleneck(8, 8, shortcut=True).use_add
    assert not Bottleneck(8, 16, shortcut=True).use_add
    assert not Bottleneck(8, 8, shortcut=False).use_add
    block = Bottleneck(8, 8).eval()
    nn.init.zeros_(block.conv2.bn.weight)
    nn.init.zeros_(block.conv2.bn.bias)  # branch outputs silu(0) = 0: the block is the identity
    x = torch.rand(1, 8, 4, 4)
    assert torch.equal(block(x), x)


def test_csp_layer_shapes():
    layer = CSPLayer(32, 64, n=2)
    assert len(layer.m) == 2 and layer.conv3.conv.in_channels == 64
    assert layer(torch.rand(1, 32, 8, 8)).shape == (1, 64, 8, 8)


def test_sppf_equals_spp_with_cascaded_kernels():
    """Max pools 5, 5∘5, 5∘5∘5 equal pools 5, 9, 13: SPPF is SPP(5, 9, 13) reorganised."""
    spp, sppf = SPP(16, 16, (5, 9, 13)).eval(), SPPF(16, 16, 5).eval()
    sppf.load_state_dict(spp.state_dict())
    x = torch.randn(2, 16, 20, 20)
    torch.testing.assert_close(sppf(x), spp(x))


def test_focus_channel_order():
    focus = Focus(1, 4, kernel_size=1)
    focus.conv = nn.Identity()  # look at the space-to-depth part alone
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    out = focus(x)
    # top-left, bottom-left, top-right, bottom-right pixel of the first 2x2 block
    assert out[0, :, 0, 0].tolist() == [0.0, 4.0, 1.0, 5.0]
    assert out.shape == (1, 4, 2, 2)


@pytest.mark.parametrize(("kernel_size", "channels"), [(1, 3), (3, 3), (5, 2)])
def test_focus_fold_equals_space_to_depth(kernel_size, channels):
    torch.manual_seed(0)
    focus = Focus(channels, 8, kernel_size=kernel_size).eval()
    x = torch.rand(2, channels, 12, 20) * 255
    with torch.no_grad():
        expected = focus(x)
        assert focus.fold_space_to_depth()
        folded = focus(x)
    conv = focus.conv.conv
    assert (conv.in_channels, conv.kernel_size, conv.stride) == (channels, (2 * kernel_size,) * 2, (2, 2))
    assert folded.shape == expected.shape
    torch.testing.assert_close(folded, expected, rtol=1e-5, atol=1e-4)


def test_focus_fold_hand_computed():
    # 1x1 conv weights 1, 10, 100, 1000 on the four block pixels: one 2x2 stride-2 conv.
    focus = Focus(1, 1, kernel_size=1, act="identity")
    focus.conv.bn = nn.Identity()
    focus.conv.conv.weight.data = torch.tensor([1.0, 10.0, 100.0, 1000.0]).reshape(1, 4, 1, 1)
    assert focus.fold_space_to_depth()
    # top-left x1, bottom-left x10, top-right x100, bottom-right x1000
    assert focus.conv.conv.weight[0, 0].tolist() == [[1.0, 100.0], [10.0, 1000.0]]
    assert not focus.fold_space_to_depth()  # already folded


def test_focus_fold_refuses_strided_conv():
    focus = Focus(3, 8, kernel_size=3, stride=2)
    weight = focus.conv.conv.weight.clone()
    assert not focus.fold_space_to_depth()
    assert not focus.folded and torch.equal(focus.conv.conv.weight, weight)


def test_fuse_conv_bn_hand_computed():
    conv = nn.Conv2d(1, 1, 1, bias=False)
    nn.init.constant_(conv.weight, 2.0)
    bn = nn.BatchNorm2d(1, eps=0.0).eval()
    bn.running_mean.fill_(1.0)
    bn.running_var.fill_(4.0)
    bn.weight.data.fill_(3.0)
    bn.bias.data.fill_(0.5)
    fused = fuse_conv_bn(conv, bn)
    # bn(conv(x)) = 3 * (2x - 1) / 2 + 0.5 = 3x - 1
    assert fused.weight.item() == pytest.approx(3.0) and fused.bias.item() == pytest.approx(-1.0)


def test_spp_cascade_equals_parallel_pools():
    spp = SPP(8, 8, (5, 9, 13)).eval()
    assert spp.cascade and not SPP(8, 8, (3, 7)).cascade
    x = torch.randn(1, 8, 24, 24)
    cascaded = spp(x)
    spp.cascade = False
    torch.testing.assert_close(cascaded, spp(x), rtol=0, atol=0)
