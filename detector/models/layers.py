"""Building blocks of YOLO-style networks.

Attribute names follow the official YOLOX modules (``conv``/``bn``, ``dconv``/``pconv``,
``conv1``..``conv3``, ``m``) so that YOLOX checkpoints map onto them one to one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from detector.errors import ConfigError
from detector.registry import BLOCKS

#: BatchNorm settings of YOLOX (its ``init_yolo`` sets them on every BN layer).
BN_EPS = 1e-3
BN_MOMENTUM = 0.03

ACTIVATIONS = {
    "silu": nn.SiLU,
    "relu": lambda: nn.ReLU(inplace=True),
    "lrelu": lambda: nn.LeakyReLU(0.1, inplace=True),
    "identity": nn.Identity,
}


def make_activation(name: str) -> nn.Module:
    """An activation module by name: ``silu``, ``relu``, ``lrelu`` (slope 0.1) or ``identity``."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{name}'; expected one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def check_multiplier(value: Any, name: str, upper: float = 10.0) -> float:
    """``value`` as a float in (0, ``upper``]: a depth or width multiplier (YOLOX-X: 1.33, 1.25).
    Larger values would build networks no machine holds; they are config mistakes."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= upper:
        raise ValueError(
            f"{name}: {value!r}; expected a number in (0, {upper:g}] (YOLOX-X uses depth 1.33, width 1.25)"
        )
    return float(value)


class ConvBNAct(nn.Module):
    """Conv2d (no bias, 'same' padding for odd kernels) -> BatchNorm2d -> activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: str = "silu",
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DepthwiseSeparableConv(nn.Module):
    """Depthwise k x k ConvBNAct (or the given ``dconv``, e.g. a depthwise RepConv) followed by a
    pointwise 1x1 ConvBNAct."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        act: str = "silu",
        dconv: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.dconv = (
            dconv
            if dconv is not None
            else ConvBNAct(in_channels, in_channels, kernel_size, stride, groups=in_channels, act=act)
        )
        self.pconv = ConvBNAct(in_channels, out_channels, 1, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pconv(self.dconv(x))


def conv_block(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, depthwise: bool = False, act: str = "silu"
) -> nn.Module:
    """A ConvBNAct, or its depthwise-separable counterpart when ``depthwise``."""
    if depthwise:
        return DepthwiseSeparableConv(in_channels, out_channels, kernel_size, stride, act=act)
    return ConvBNAct(in_channels, out_channels, kernel_size, stride, act=act)


@BLOCKS.register("conv")
def conv3x3_block(
    in_channels: int, out_channels: int, stride: int = 1, depthwise: bool = False, act: str = "silu"
) -> nn.Module:
    """The plain 3x3 block: a ConvBNAct, or its depthwise-separable counterpart."""
    return conv_block(in_channels, out_channels, 3, stride, depthwise, act)


def block_factory(name: str) -> Any:
    """The 3x3 block builder called ``name`` in ``BLOCKS`` (``conv``, ``repvgg``, ``qarepvgg``);
    ValueError naming the close ones otherwise (a constructor's error, prefixed by the config path)."""
    try:
        return BLOCKS.get(name, "block")
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


class Bottleneck(nn.Module):
    """1x1 reduce then a 3x3 block (``block``: a ``BLOCKS`` name), with a residual when
    ``shortcut`` and shapes agree."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        shortcut: bool = True,
        expansion: float = 0.5,
        depthwise: bool = False,
        act: str = "silu",
        block: str = "conv",
    ) -> None:
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = ConvBNAct(in_channels, hidden, 1, act=act)
        self.conv2 = block_factory(block)(hidden, out_channels, 1, depthwise, act)
        self.use_add = shortcut and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return x + y if self.use_add else y


class CSPLayer(nn.Module):
    """Cross-stage-partial block (YOLOv5 "C3"): two 1x1 branches, ``n`` bottlenecks on one
    (their 3x3 convs are ``block``s: ``conv``, or re-parameterisable ``repvgg`` / ``qarepvgg``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n: int = 1,
        shortcut: bool = True,
        expansion: float = 0.5,
        depthwise: bool = False,
        act: str = "silu",
        block: str = "conv",
    ) -> None:
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = ConvBNAct(in_channels, hidden, 1, act=act)
        self.conv2 = ConvBNAct(in_channels, hidden, 1, act=act)
        self.conv3 = ConvBNAct(2 * hidden, out_channels, 1, act=act)
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut, 1.0, depthwise, act, block) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(torch.cat((self.m(self.conv1(x)), self.conv2(x)), dim=1))


class SPP(nn.Module):
    """Spatial pyramid pooling: parallel stride-1 max pools of several sizes, concatenated."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_sizes: tuple[int, ...] = (5, 9, 13), act: str = "silu"
    ) -> None:
        super().__init__()
        hidden = in_channels // 2
        self.conv1 = ConvBNAct(in_channels, hidden, 1, act=act)
        self.m = nn.ModuleList(nn.MaxPool2d(k, stride=1, padding=k // 2) for k in kernel_sizes)
        self.conv2 = ConvBNAct(hidden * (len(kernel_sizes) + 1), out_channels, 1, act=act)
        # Kernels k, 2k-1, 3k-2, ... equal repeated k x k pools (max is associative), which
        # cost a fraction of the large pools; the outputs are identical.
        first = kernel_sizes[0]
        self.cascade = all(k == first + i * (first - 1) for i, k in enumerate(kernel_sizes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        if self.cascade:
            pooled = [x]
            for _ in self.m:
                pooled.append(self.m[0](pooled[-1]))
            return self.conv2(torch.cat(pooled, dim=1))
        return self.conv2(torch.cat([x, *(pool(x) for pool in self.m)], dim=1))


class SPPF(nn.Module):
    """Fast SPP (YOLOv5): one k x k max pool applied three times in sequence.

    Equal to SPP with kernels (k, 2k-1, 3k-2) at a fraction of the cost.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5, act: str = "silu") -> None:
        super().__init__()
        hidden = in_channels // 2
        self.conv1 = ConvBNAct(in_channels, hidden, 1, act=act)
        self.m = nn.MaxPool2d(kernel_size, stride=1, padding=kernel_size // 2)
        self.conv2 = ConvBNAct(hidden * 4, out_channels, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.conv2(torch.cat((x, y1, y2, self.m(y2)), dim=1))


class Focus(nn.Module):
    """Space-to-depth (2x2 pixel blocks to 4x channels) followed by a ConvBNAct.

    The channel order (top-left, bottom-left, top-right, bottom-right) is YOLOX's, which its
    stem weights depend on.
    """

    #: (row, column) offset of each 2x2 block position, in channel-group order.
    BLOCK_OFFSETS = ((0, 0), (1, 0), (0, 1), (1, 1))

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, act: str = "silu"):
        super().__init__()
        self.conv = ConvBNAct(in_channels * 4, out_channels, kernel_size, stride, act=act)
        self.folded = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.folded:
            return self.conv(x)
        patches = tuple(x[..., dy::2, dx::2] for dy, dx in self.BLOCK_OFFSETS)
        return self.conv(torch.cat(patches, dim=1))

    def fold_space_to_depth(self) -> bool:
        """Replace space-to-depth + k x k conv (stride 1, padding k // 2) by the equal 2k x 2k
        conv with stride 2 and padding 2 * (k // 2) on the input, for inference: the slicing and
        the 4x-channel copy disappear (YOLOv5 6.0 made the same change). Equal up to float
        rounding; the stem's weights change shape, so fold only models that are not trained or
        saved afterwards. Returns False (and changes nothing) for other conv settings."""
        conv = self.conv.conv
        k = conv.kernel_size[0]
        if (
            self.folded or conv.kernel_size != (k, k) or k % 2 == 0 or conv.stride != (1, 1)
            or conv.padding != (k // 2, k // 2) or conv.groups != 1 or conv.dilation != (1, 1)
        ):  # fmt: skip
            return False
        channels = conv.in_channels // 4
        folded = nn.Conv2d(channels, conv.out_channels, 2 * k, 2, 2 * (k // 2), bias=conv.bias is not None)
        folded = folded.to(device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            weight = torch.zeros_like(folded.weight)
            for group, (dy, dx) in enumerate(self.BLOCK_OFFSETS):
                # Input pixel (2i + dy, 2j + dx) is block pixel (i, j) of channel group `group`.
                weight[:, :, dy::2, dx::2] = conv.weight[:, group * channels : (group + 1) * channels]
            folded.weight.copy_(weight)
            if conv.bias is not None:
                folded.bias.copy_(conv.bias)
        folded.requires_grad_(conv.weight.requires_grad)
        self.conv.conv = folded
        self.folded = True
        return True


def bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(scale, shift)`` with ``bn(x) = x * scale + shift`` in eval mode (running
    statistics): the algebra every BatchNorm fold uses."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A Conv2d with bias computing ``bn(conv(x))`` in eval mode (running statistics)."""
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        scale, shift = bn_scale_shift(bn)
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_(conv_bias * scale + shift)
    fused.requires_grad_(conv.weight.requires_grad)
    return fused


def fuse_conv_bn_act(block: ConvBNAct) -> bool:
    """Fold the block's BatchNorm into its conv (a biased conv; the BatchNorm becomes Identity),
    in place, eval statistics. Returns False when already folded."""
    # _BatchNorm: also the SyncBatchNorm of a distributed run's model.
    if not isinstance(block.bn, nn.modules.batchnorm._BatchNorm):
        return False
    block.conv = fuse_conv_bn(block.conv, block.bn)
    block.bn = nn.Identity()
    return True


def fuse_model(model: nn.Module, batchnorm: bool = True) -> nn.Module:
    """Fold every ConvBNAct's BatchNorm into its conv (unless not ``batchnorm``) and every Focus's
    space-to-depth into its conv (``Focus.fold_space_to_depth``), in place, for inference;
    returns ``model``."""
    for module in model.modules():
        if batchnorm and isinstance(module, ConvBNAct):
            fuse_conv_bn_act(module)
    for module in model.modules():
        if isinstance(module, Focus):
            module.fold_space_to_depth()
    return model
