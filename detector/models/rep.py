"""Re-parameterisable 3x3 blocks: several branches while training, one 3x3 conv when deployed.

RepVGG (Ding et al. 2021) trains a 3x3 conv+BN, a 1x1 conv+BN and, when the shapes allow, an
identity BN side by side and sums them. All three are linear in the input in eval mode, so their
sum is one 3x3 conv: the 1x1 kernel sits at the 3x3 kernel's centre and the identity is a 3x3
kernel with a single 1 at the centre of each channel's own input. QARepVGG (Chu et al. 2022,
arXiv 2212.01593) keeps the BN on the 3x3 branch only and puts one BN after the sum: plain RepVGG
weights fold into kernels whose per-channel ranges INT8 quantisation handles badly. Both fold
with the same algebra (:func:`detector.models.layers.bn_scale_shift`).

Used through the ``block`` setting of the CSP layers (``BLOCKS``: ``repvgg``, ``qarepvgg``);
``Detector.fuse()`` folds every RepConv.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from detector.models.layers import BN_EPS, BN_MOMENTUM, DepthwiseSeparableConv, bn_scale_shift, make_activation
from detector.registry import BLOCKS


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def identity_kernel(channels: int, groups: int, like: torch.Tensor) -> torch.Tensor:
    """The ``[C, C / groups, 3, 3]`` kernel of the identity map for a grouped 3x3 conv: output
    channel ``i`` reads input ``i``, which is entry ``i % (C / groups)`` of its group."""
    per_group = channels // groups
    kernel = torch.zeros(channels, per_group, 3, 3, dtype=like.dtype, device=like.device)
    kernel[torch.arange(channels), torch.arange(channels) % per_group, 1, 1] = 1.0
    return kernel


class RepConv(nn.Module):
    """A 3x3 conv (stride ``stride``, ``groups`` groups, 'same' padding) trained as branches:

    * ``quant_friendly=False`` (RepVGG): ``act(bn3(conv3(x)) + bn1(conv1(x)) + bn_id(x))``;
    * ``quant_friendly=True`` (QARepVGG): ``act(bn_post(bn3(conv3(x)) + conv1(x) + x))``;

    the identity term only when ``in_channels == out_channels`` and ``stride == 1``. After
    :meth:`fold` (eval-mode statistics) it is ``act(conv(x))`` with one biased 3x3 conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        groups: int = 1,
        act: str = "silu",
        quant_friendly: bool = False,
    ) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"RepConv: {in_channels} -> {out_channels} channels do not split into {groups} groups")
        self.stride = stride
        self.quant_friendly = quant_friendly
        self.conv3x3 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, groups=groups, bias=False)
        self.bn3x3 = _bn(out_channels)
        self.conv1x1 = nn.Conv2d(in_channels, out_channels, 1, stride, 0, groups=groups, bias=False)
        self.bn1x1 = None if quant_friendly else _bn(out_channels)
        self.has_identity = in_channels == out_channels and stride == 1
        self.bn_identity = _bn(out_channels) if self.has_identity and not quant_friendly else None
        self.bn_post = _bn(out_channels) if quant_friendly else None
        self.act = make_activation(act)
        #: The folded 3x3 conv (None while the block has its branches).
        self.conv: nn.Conv2d | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            return self.act(self.conv(x))
        y = self.bn3x3(self.conv3x3(x))
        one = self.conv1x1(x)
        y = y + (self.bn1x1(one) if self.bn1x1 is not None else one)
        if self.has_identity:
            y = y + (self.bn_identity(x) if self.bn_identity is not None else x)
        if self.bn_post is not None:
            y = self.bn_post(y)
        return self.act(y)

    @torch.no_grad()
    def folded_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``(weight [C_out, C_in / groups, 3, 3], bias [C_out])`` of the single conv equal to
        the branches' sum (and the post-sum BN) with eval-mode BatchNorm statistics."""
        scale, shift = bn_scale_shift(self.bn3x3)
        kernel = self.conv3x3.weight * scale[:, None, None, None]
        bias = shift.clone()
        # A 1x1 conv with padding 0 samples where a 3x3 kernel's centre does with padding 1,
        # for any stride: it is the 3x3 kernel that is zero off the centre.
        one = F.pad(self.conv1x1.weight, [1, 1, 1, 1])
        if self.bn1x1 is not None:
            scale, shift = bn_scale_shift(self.bn1x1)
            one, bias = one * scale[:, None, None, None], bias + shift
        kernel = kernel + one
        if self.has_identity:
            ident = identity_kernel(self.conv3x3.out_channels, self.conv3x3.groups, kernel)
            if self.bn_identity is not None:
                scale, shift = bn_scale_shift(self.bn_identity)
                ident, bias = ident * scale[:, None, None, None], bias + shift
            kernel = kernel + ident
        if self.bn_post is not None:
            scale, shift = bn_scale_shift(self.bn_post)
            kernel, bias = kernel * scale[:, None, None, None], bias * scale + shift
        return kernel, bias

    def fold(self) -> bool:
        """Replace the branches by their single 3x3 conv, in place, for inference (eval-mode
        statistics; the model is not trained afterwards). Returns False when already folded."""
        if self.conv is not None:
            return False
        weight, bias = self.folded_kernel()
        # Channel counts from the trained conv: pruning may have narrowed it since construction.
        branch = self.conv3x3
        conv = nn.Conv2d(branch.in_channels, branch.out_channels, 3, self.stride, 1, groups=branch.groups, bias=True)
        conv = conv.to(device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(weight)
            conv.bias.copy_(bias)
        conv.requires_grad_(self.conv3x3.weight.requires_grad)
        for name in ("conv3x3", "bn3x3", "conv1x1", "bn1x1", "bn_identity", "bn_post"):
            delattr(self, name)
        self.bn1x1 = self.bn_identity = self.bn_post = None
        self.conv = conv
        return True


def fold_rep_convs(model: nn.Module) -> int:
    """Fold every :class:`RepConv` in ``model`` (in place); returns how many were folded."""
    return sum(module.fold() for module in list(model.modules()) if isinstance(module, RepConv))


def _rep_block(
    in_channels: int, out_channels: int, stride: int, depthwise: bool, act: str, quant_friendly: bool
) -> nn.Module:
    if depthwise:
        # The depthwise 3x3 is the re-parameterised part; the pointwise 1x1 stays a ConvBNAct.
        dconv = RepConv(in_channels, in_channels, stride, in_channels, act, quant_friendly)
        return DepthwiseSeparableConv(in_channels, out_channels, 3, stride, act, dconv=dconv)
    return RepConv(in_channels, out_channels, stride, 1, act, quant_friendly)


@BLOCKS.register("repvgg")
def repvgg_block(
    in_channels: int, out_channels: int, stride: int = 1, depthwise: bool = False, act: str = "silu"
) -> nn.Module:
    """A RepVGG 3x3 block (BN on every branch), depthwise-separable when ``depthwise``."""
    return _rep_block(in_channels, out_channels, stride, depthwise, act, quant_friendly=False)


@BLOCKS.register("qarepvgg")
def qarepvgg_block(
    in_channels: int, out_channels: int, stride: int = 1, depthwise: bool = False, act: str = "silu"
) -> nn.Module:
    """A QARepVGG 3x3 block (BN on the 3x3 branch and after the sum), depthwise-separable when
    ``depthwise``."""
    return _rep_block(in_channels, out_channels, stride, depthwise, act, quant_friendly=True)
