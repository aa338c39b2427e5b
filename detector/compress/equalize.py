"""Cross-layer equalisation (CLE) with bias absorption (Nagel et al. 2019, data-free quantisation).

For two convs in a row, ``y = W2 f(W1 x + b1) + b2``, with ``f`` positively homogeneous
(``f(s x) = s f(x)`` for ``s > 0``: ReLU, LeakyReLU, identity), dividing output channel ``i`` of
the first conv by ``s_i`` and multiplying input channel ``i`` of the second by ``s_i`` leaves
``y`` unchanged. ``s_i = sqrt(r1_i / r2_i)`` (``r1_i``: the largest |weight| of output channel
``i`` of the first conv, ``r2_i``: of input channel ``i`` of the second) gives both the same
range ``sqrt(r1_i r2_i)``, so that per-tensor and per-channel INT8 weights of the pair waste
fewer levels on outlier channels. Chains (a conv second in one pair and first in the next) are
swept pair by pair until the scales settle.

Bias absorption: after equalisation a channel's pre-activation ``z ~ N(beta, gamma^2)`` (its
BatchNorm) may sit far above zero. Where ``c = beta - 3 gamma > 0``, ``ReLU(z) = ReLU(z - c) + c``
for nearly all inputs: ``c`` moves out of the first conv's bias into the second's
(``b2 += W2 c``), shrinking the activation range that is quantised. Done only into 1x1 second
convs (padding would turn the moved constant into an error at the borders).

SiLU (YOLOX's activation) is not positively homogeneous: ``silu(x / s) != silu(x) / s``.
``activations=("silu",)`` equalises SiLU pairs anyway; that changes the float outputs, by an
amount ``bench/compress.py`` measures.

The pairs are the detector's own: each depthwise-separable block (depthwise, pointwise), each
CSP bottleneck (1x1 reduce, first conv of its 3x3 block) and consecutive blocks of the head's
towers; the first conv's output feeds nothing else in each.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from detector.models.layers import Bottleneck, ConvBNAct, DepthwiseSeparableConv, fuse_conv_bn_act

#: Activation modules by their ``make_activation`` names (``activations`` selects among them; only
#: relu, lrelu and identity commute with positive scaling).
ACTIVATION_NAMES = {nn.ReLU: "relu", nn.LeakyReLU: "lrelu", nn.Identity: "identity", nn.SiLU: "silu"}


@dataclass
class EqualizationReport:
    """Pairs equalised, bias absorbed, and the mean over pairs of (largest channel range /
    smallest) of the first conv's output channels before and after."""

    pairs: int
    skipped: int
    absorbed_channels: int
    spread_before: float
    spread_after: float


def _first_conv(block: nn.Module) -> ConvBNAct | None:
    if isinstance(block, ConvBNAct):
        return block
    if isinstance(block, DepthwiseSeparableConv) and isinstance(block.dconv, ConvBNAct):
        return block.dconv
    return None  # a re-parameterised block: fold it first (Detector.fuse)


def _last_conv(block: nn.Module) -> ConvBNAct | None:
    if isinstance(block, ConvBNAct):
        return block
    if isinstance(block, DepthwiseSeparableConv):
        return block.pconv
    return None


def equalization_pairs(model: nn.Module) -> Iterator[tuple[str, ConvBNAct, ConvBNAct]]:
    """``(name, first, second)`` for each conv pair whose first output feeds only the second."""
    for name, module in model.named_modules():
        if isinstance(module, DepthwiseSeparableConv) and isinstance(module.dconv, ConvBNAct):
            yield f"{name}.dconv", module.dconv, module.pconv
        elif isinstance(module, Bottleneck):
            second = _first_conv(module.conv2)
            if second is not None:
                yield f"{name}.conv1", module.conv1, second
        elif isinstance(module, nn.Sequential) and all(_first_conv(b) is not None for b in module):
            for i in range(len(module) - 1):
                first = _last_conv(module[i])
                if first is not None:
                    yield f"{name}.{i}", first, _first_conv(module[i + 1])


def _output_ranges(weight: torch.Tensor) -> torch.Tensor:
    return weight.abs().flatten(1).amax(dim=1)


def _input_ranges(weight: torch.Tensor, groups: int) -> torch.Tensor:
    if groups == 1:
        return weight.abs().transpose(0, 1).flatten(1).amax(dim=1)
    if groups == weight.shape[0] and weight.shape[1] == 1:  # depthwise: input i is filter i
        return weight.abs().flatten(1).amax(dim=1)
    raise ValueError(f"grouped conv with {groups} groups: only dense and depthwise convs are equalised")


def _scale_input(weight: torch.Tensor, groups: int, scale: torch.Tensor) -> torch.Tensor:
    if groups == 1:
        return weight * scale[None, :, None, None]
    return weight * scale[:, None, None, None]


@torch.no_grad()
def cross_layer_equalize(
    model: nn.Module,
    activations: Sequence[str] = ("relu", "lrelu", "identity"),
    absorb_bias: bool = True,
    sweeps: int = 30,
) -> EqualizationReport:
    """Equalise every pair of ``equalization_pairs`` whose first activation is one of
    ``activations``, in place; each pair's BatchNorms are folded into its convs (as
    ``Detector.fuse`` would; call this before ``fuse`` or on an unfused model, eval statistics).
    Bias absorption uses each first conv's BatchNorm statistics (ReLU pairs into 1x1 convs)."""
    pairs = []
    skipped = 0
    for _, first, second in equalization_pairs(model):
        name = ACTIVATION_NAMES.get(type(first.act))
        if name in activations:
            pairs.append((first, second))
        else:
            skipped += 1
    # The pre-activation statistics, read before any folding.
    stats = {}
    for first, _ in pairs:
        if isinstance(first.bn, nn.modules.batchnorm._BatchNorm):
            stats[id(first)] = (first.bn.weight.detach().abs().clone(), first.bn.bias.detach().clone())
    for block in {id(b): b for pair in pairs for b in pair}.values():
        fuse_conv_bn_act(block)
    spreads_before, spreads_after = [], []
    for sweep in range(sweeps):
        largest_step = 0.0
        for first, second in pairs:
            r1 = _output_ranges(first.conv.weight)
            r2 = _input_ranges(second.conv.weight, second.conv.groups)
            if sweep == 0:
                spreads_before.append(float(r1.max() / r1.clamp_min(1e-12).min()))
            scale = torch.where((r1 > 0) & (r2 > 0), torch.sqrt(r1 / r2.clamp_min(1e-12)), torch.ones_like(r1))
            largest_step = max(largest_step, float(scale.log().abs().max()) if len(scale) else 0.0)
            first.conv.weight.div_(scale[:, None, None, None])
            first.conv.bias.div_(scale)
            second.conv.weight.copy_(_scale_input(second.conv.weight, second.conv.groups, scale))
            if id(first) in stats:
                gamma, beta = stats[id(first)]
                stats[id(first)] = (gamma / scale, beta / scale)
        if largest_step < 1e-4:  # chains of pairs share convs: sweep until the scales settle
            break
    absorbed = 0
    for first, second in pairs:
        r1 = _output_ranges(first.conv.weight)
        spreads_after.append(float(r1.max() / r1.clamp_min(1e-12).min()))
        dense_1x1 = second.conv.kernel_size == (1, 1) and second.conv.groups == 1
        if not (absorb_bias and isinstance(first.act, nn.ReLU) and id(first) in stats and dense_1x1):
            continue
        gamma, beta = stats[id(first)]
        shift = (beta - 3 * gamma).clamp_min(0)
        absorbed += int((shift > 0).sum())
        first.conv.bias.sub_(shift)
        second.conv.bias.add_(second.conv.weight.sum(dim=(2, 3)) @ shift)
    mean = lambda values: sum(values) / max(len(values), 1)  # noqa: E731
    return EqualizationReport(len(pairs), skipped, absorbed, mean(spreads_before), mean(spreads_after))
