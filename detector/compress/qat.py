"""Quantisation-aware training (QAT): fine-tuning with INT8 fake quantisation in the forward pass,
so that the weights adapt to the rounding, and an ONNX export that is an INT8 QDQ model.

:func:`prepare_qat` folds what the export folds (re-parameterised branches, the Focus stem, the
box/objectness convs merged; each BatchNorm into its conv, on the fly) and puts fake quantisers
exactly where ONNX Runtime's static QDQ quantisation (:func:`detector.export.quantize.quantize_int8`)
puts its QuantizeLinear/DequantizeLinear pairs, so the export runs with the same INT8 kernels:

* every conv: weights (BatchNorm folded in) int8 per output channel, symmetric (scale
  ``max|w| / 127``; with ``weight_bits=7``, ``max|w| / 64``, ONNX Runtime's ``reduce_range``),
  bias int32 in units of input scale x weight scale; input and output uint8 per tensor;
* SiLU (``x * sigmoid(x)``): the sigmoid's output and the product; LeakyReLU: its output; ReLU:
  its output instead of the conv's (ONNX Runtime folds a ReLU into the conv's output range);
* the residual adds' outputs; max-pooling and nearest upsampling stay on their input's grid.

A tensor is quantised once however many convs read it (the first reader's quantiser), and not
again when it already is the output of a quantiser. Gradients pass straight through the
rounding inside the range (the straight-through estimator of PyTorch's fake-quantisation ops).

Activation ranges start from min/max over calibration images (:func:`calibrate`, as PTQ's
default calibrator) and follow the training batches by an exponential moving average
(``momentum``; 0 keeps them fixed); they are fixed in eval mode.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from detector.models.backbones.darknet import ResidualBlock
from detector.models.heads.yolox_head import YOLOXHead
from detector.models.layers import Bottleneck, ConvBNAct, bn_scale_shift

logger = logging.getLogger(__name__)

#: uint8 activations, int8 weights restricted to +-127 (symmetric around an exact zero).
ACT_QMIN, ACT_QMAX = 0, 255
WEIGHT_QMAX = 127
#: Largest |weight| in int8 units by weight bits: 7 is ONNX Runtime's ``reduce_range`` (+-64), for
#: x86 CPUs without VNNI, whose u8 x s8 kernel (VPMADDUBSW) adds two products in int16:
#: 2 x 255 x 64 fits, 2 x 255 x 127 saturates.
WEIGHT_QMAX_BY_BITS = {8: WEIGHT_QMAX, 7: 64}
#: The int32 bias stays within +-2^30, leaving the accumulator room (ONNX Runtime adds them in int32).
BIAS_QMAX = 2**30


class ActivationQuantizer(nn.Module):
    """Per-tensor uint8 affine fake quantisation with an observed range ``[min_val, max_val]``
    (widened to include 0, so that zero is exact, as ONNX Runtime's calibrators do)."""

    def __init__(self, momentum: float = 0.01) -> None:
        super().__init__()
        self.momentum = float(momentum)
        self.calibrating = False
        self.register_buffer("min_val", torch.tensor(0.0))
        self.register_buffer("max_val", torch.tensor(0.0))
        self.register_buffer("observed", torch.tensor(False))

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, zero_point)``: float32 and int32 scalars, ``x ~ (q - zero_point) * scale``."""
        low, high = self.min_val.clamp(max=0.0), self.max_val.clamp(min=0.0)
        scale = ((high - low) / (ACT_QMAX - ACT_QMIN)).clamp(min=1e-8)
        zero_point = (ACT_QMIN - low / scale).round().clamp(ACT_QMIN, ACT_QMAX).to(torch.int32)
        return scale, zero_point

    @torch.no_grad()
    def observe(self, x: torch.Tensor) -> None:
        """Calibrating: widen the range to ``x``'s; training: move it toward ``x``'s by ``momentum``."""
        low, high = torch.aminmax(x.detach().float())
        if self.calibrating:
            seen_low, seen_high = torch.minimum(low, self.min_val), torch.maximum(high, self.max_val)
        else:
            seen_low, seen_high = self.min_val.lerp(low, self.momentum), self.max_val.lerp(high, self.momentum)
        # torch.where, not an `if` on the flag: no device sync in every quantiser's forward.
        self.min_val.copy_(torch.where(self.observed, seen_low, low))
        self.max_val.copy_(torch.where(self.observed, seen_high, high))
        self.observed.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            self.observe(x)
            return x
        if self.training and self.momentum > 0:
            self.observe(x)
        scale, zero_point = self.qparams()
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, ACT_QMIN, ACT_QMAX)

    def extra_repr(self) -> str:
        return f"momentum={self.momentum}, range=[{float(self.min_val):.4g}, {float(self.max_val):.4g}]"


#: The forward pass in progress: tags on tensors count only within the pass that set them, so
#: a tensor passed again (the same image batch) is quantised with the ranges of that time.
_passes = itertools.count(1)
_current_pass = [0]


def _start_pass(module: nn.Module, args: tuple) -> None:
    # Forward pre-hook of the prepared model.
    _current_pass[0] = next(_passes)


def grid_of(x: torch.Tensor) -> ActivationQuantizer | None:
    """The quantiser whose output ``x`` is, in the current forward pass (None: not quantised)."""
    tag = getattr(x, "_qat_grid", None)
    return tag[1] if tag is not None and tag[0] == _current_pass[0] else None


def quantize_once(x: torch.Tensor, quantizer: ActivationQuantizer) -> torch.Tensor:
    """``x`` through ``quantizer``, unless ``x`` already is a quantiser's output (returned as it
    is) or was quantised by an earlier reader in this forward pass (that result is returned).
    Calibrating, every quantiser sees its float input and nothing is tagged."""
    if quantizer.calibrating:
        return quantizer(x)
    if grid_of(x) is not None:
        return x
    twin = getattr(x, "_qat_twin", None)
    if twin is not None and twin[0] == _current_pass[0]:
        return twin[1]
    y = quantizer(x)
    x._qat_twin = (_current_pass[0], y)
    y._qat_grid = (_current_pass[0], quantizer)
    return y


def fake_quantize_weight(
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    input_scale: torch.Tensor | None = None,
    qmax: int = WEIGHT_QMAX,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight`` ``[out, in/groups, kh, kw]`` rounded to int8 per output channel, symmetric,
    scale ``max|w| / qmax`` (not learned: the range follows the weights; ``qmax`` 127, or 64 for
    7-bit weights). With ``bias`` and the
    input's scale, a channel's scale is at least ``|bias| / (input_scale * 2^30)``: the
    INT8 conv adds the bias as int32 in units of ``input_scale * weight_scale``, and near-zero
    weights (a fresh prediction conv) would otherwise overflow it. Returns the rounded weights and
    the scales ``[out]``."""
    scale = weight.detach().abs().amax(dim=tuple(range(1, weight.dim()))) / qmax
    if bias is not None and input_scale is not None:
        scale = torch.maximum(scale, bias.detach().abs() / (input_scale.detach() * BIAS_QMAX))
    scale = scale.clamp(min=1e-12)
    zero_point = torch.zeros(weight.shape[0], dtype=torch.int32, device=weight.device)
    # -128 is allowed by the range but never reached: |w| / scale <= qmax <= 127.
    return torch.fake_quantize_per_channel_affine(weight, scale, zero_point, 0, -WEIGHT_QMAX - 1, WEIGHT_QMAX), scale


def fake_quantize_bias(bias: torch.Tensor, input_scale: torch.Tensor, weight_scale: torch.Tensor) -> torch.Tensor:
    """``bias`` ``[out]`` rounded to multiples of ``input_scale * weight_scale``: the int32 bias
    of the INT8 conv (the export stores it so). Gradients pass straight through."""
    step = input_scale.detach() * weight_scale
    return bias + (torch.round(bias / step) * step - bias).detach()


class QuantConv2d(nn.Conv2d):
    """``nn.Conv2d`` with fake-quantised input, weights and, unless ``output_quant`` is None (a
    ReLU follows and quantises instead), output. Same parameter names as the conv it replaces."""

    input_quant: ActivationQuantizer
    output_quant: ActivationQuantizer | None
    weight_qmax: int = WEIGHT_QMAX

    @classmethod
    def from_conv(
        cls, conv: nn.Conv2d, momentum: float, quantize_output: bool = True, weight_qmax: int = WEIGHT_QMAX
    ) -> QuantConv2d:
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                  conv.groups, conv.bias is not None, conv.padding_mode)  # fmt: skip
        new = new.to(device=conv.weight.device, dtype=conv.weight.dtype)
        new.load_state_dict(conv.state_dict())
        new.requires_grad_(conv.weight.requires_grad)
        new.input_quant = ActivationQuantizer(momentum)
        new.output_quant = ActivationQuantizer(momentum) if quantize_output else None
        new.weight_qmax = weight_qmax
        return new

    def forward(self, x: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm | None = None) -> torch.Tensor:
        """``bn``: a BatchNorm folded into the weights and bias before they are quantised."""
        x = quantize_once(x, self.input_quant)
        weight, bias = self.weight, self.bias
        if bn is not None:
            scale, shift = bn_scale_shift(bn)
            weight = weight * scale.reshape(-1, 1, 1, 1)
            bias = shift if bias is None else bias * scale + shift
        if not self.input_quant.calibrating:  # calibration runs the float model, as PTQ's does
            input_scale = grid_of(x).qparams()[0]
            weight, weight_scale = fake_quantize_weight(weight, bias, input_scale, self.weight_qmax)
            bias = fake_quantize_bias(bias, input_scale, weight_scale) if bias is not None else None
        y = self._conv_forward(x, weight, bias)
        return quantize_once(y, self.output_quant) if self.output_quant is not None else y


class QuantConvBNAct(nn.Module):
    """A ``ConvBNAct`` fake-quantised as its export runs: the BatchNorm folded into the conv on
    the fly with frozen statistics (its scale and shift still train), so that the optimiser
    keeps the geometry of the BatchNorm parameterisation; training the folded convs directly
    diverged. Same attribute and parameter names as the block it replaces."""

    def __init__(self, block: ConvBNAct, momentum: float, weight_qmax: int = WEIGHT_QMAX) -> None:
        super().__init__()
        relu = isinstance(block.act, nn.ReLU)
        self.conv = QuantConv2d.from_conv(block.conv, momentum, quantize_output=not relu, weight_qmax=weight_qmax)
        self.bn = block.bn
        self.act = quantized_activation(block.act, momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn = self.bn if isinstance(self.bn, nn.modules.batchnorm._BatchNorm) else None
        return self.act(self.conv(x, bn))


class QuantSiLU(nn.Module):
    """``x * sigmoid(x)`` with the input, the sigmoid's output and the product fake-quantised
    (ONNX Runtime runs it as QLinearSigmoid and QLinearMul)."""

    def __init__(self, momentum: float) -> None:
        super().__init__()
        self.input_quant = ActivationQuantizer(momentum)
        self.sigmoid_quant = ActivationQuantizer(momentum)
        self.output_quant = ActivationQuantizer(momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = quantize_once(x, self.input_quant)
        return quantize_once(x * quantize_once(torch.sigmoid(x), self.sigmoid_quant), self.output_quant)


class QuantActivation(nn.Module):
    """An elementwise activation (ReLU, LeakyReLU) with a fake-quantised output (and input, when
    it is not quantised already)."""

    def __init__(self, act: nn.Module, momentum: float) -> None:
        super().__init__()
        self.act = act
        if hasattr(act, "inplace"):
            act.inplace = False  # the input may be a quantiser's output another reader still needs
        self.output_quant = ActivationQuantizer(momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quantize_once(self.act(x), self.output_quant)


def _quantize_sum(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    # Forward hook of a residual block: its output is the sum, which ONNX Runtime quantises.
    return quantize_once(output, module.sum_quant)


def _keep_grid(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor | None:
    # Forward hook of max-pooling / nearest upsampling: the values stay on the input's grid; the
    # explicit pair lets ONNX Runtime run the op on uint8 (as PTQ's graph does).
    quantizer = grid_of(inputs[0])
    if quantizer is None:
        return None
    scale, zero_point = quantizer.qparams()
    y = torch.fake_quantize_per_tensor_affine(output, scale, zero_point, ACT_QMIN, ACT_QMAX)
    y._qat_grid = (_current_pass[0], quantizer)
    return y


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)


def quantized_activation(act: nn.Module, momentum: float) -> nn.Module:
    """The fake-quantised counterpart of an activation module (``nn.Identity`` stays)."""
    if isinstance(act, nn.SiLU):
        return QuantSiLU(momentum)
    if isinstance(act, nn.ReLU | nn.LeakyReLU | nn.ReLU6):
        return QuantActivation(act, momentum)
    if isinstance(act, nn.Identity):
        return act
    raise ValueError(f"quantisation-aware training: no INT8 counterpart for activation {type(act).__name__}")


def prepare_qat(model: nn.Module, momentum: float = 0.01, weight_bits: int = 8) -> nn.Module:
    """Add the fake quantisers described in the module docstring to ``model`` (a ``Detector``),
    in place; returns it. ``weight_bits``: 8, or 7 (``WEIGHT_QMAX_BY_BITS``).
    ``model.fuse(batchnorm=False)`` first (re-parameterised blocks and the
    Focus stem folded, box/objectness convs merged, as the export does); BatchNorms stay, folded on the fly
    (:class:`QuantConvBNAct`). Its state dict gains the quantisers' ranges and keeps every weight's name
    (the stem's and the head's merged convs as after ``Detector.fuse``), so a checkpoint loads
    into ``prepare_qat(build_model(cfg))``."""
    if weight_bits not in WEIGHT_QMAX_BY_BITS:
        raise ValueError(f"weight_bits: expected one of {sorted(WEIGHT_QMAX_BY_BITS)}, got {weight_bits!r}")
    qmax = WEIGHT_QMAX_BY_BITS[weight_bits]
    if is_quantization_aware(model):
        return model
    model.fuse(batchnorm=False)
    model.register_forward_pre_hook(_start_pass)
    for name, module in list(model.named_modules()):
        if isinstance(module, ConvBNAct):
            _replace(model, name, QuantConvBNAct(module, momentum, qmax))
    box_predictions = tuple(f"head.{name}." for name in YOLOXHead.BOX_PREDICTIONS)
    for name, module in list(model.named_modules()):
        if type(module) is nn.Conv2d and not name.startswith(box_predictions):
            # The class prediction convs, folded re-parameterised convs. Box predictions stay
            # float, as PTQ keeps them (YOLOXHead.BOX_PREDICTIONS).
            _replace(model, name, QuantConv2d.from_conv(module, momentum, weight_qmax=qmax))
        elif isinstance(module, nn.SiLU | nn.ReLU | nn.LeakyReLU | nn.ReLU6) and not _in_quant_block(model, name):
            _replace(model, name, quantized_activation(module, momentum))
        elif isinstance(module, Bottleneck | ResidualBlock) and getattr(module, "use_add", True):
            module.sum_quant = ActivationQuantizer(momentum)
            module.register_forward_hook(_quantize_sum)
        elif isinstance(module, nn.MaxPool2d) or (isinstance(module, nn.Upsample) and module.mode == "nearest"):
            module.register_forward_hook(_keep_grid)
    return model


def drop_box_prediction_quantisers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` (a QAT model's state dict) without quantiser ranges of the box prediction convs:
    checkpoints made before those convs were kept in float (2026-12-02) load, the convs in float."""
    marks = tuple(f"head.{name}." for name in YOLOXHead.BOX_PREDICTIONS)
    stale = [k for k in state if k.startswith(marks) and "_quant." in k]
    if stale:
        logger.warning("%d quantiser ranges of the box prediction convs ignored: they run in float now", len(stale))
    return {k: v for k, v in state.items() if k not in stale}


def _in_quant_block(model: nn.Module, name: str) -> bool:
    # An activation inside a QuantActivation (already wrapped).
    parent = name.rpartition(".")[0]
    return bool(parent) and isinstance(model.get_submodule(parent), QuantActivation)


def is_quantization_aware(model: nn.Module) -> bool:
    """Whether ``model`` went through :func:`prepare_qat`."""
    return any(isinstance(m, ActivationQuantizer) for m in model.modules())


def weight_bits_of(model: nn.Module) -> int:
    """The weight bits a :func:`prepare_qat` model was prepared with (8 or 7)."""
    qmax = {m.weight_qmax for m in model.modules() if isinstance(m, QuantConv2d)}
    bits = [b for b, q in WEIGHT_QMAX_BY_BITS.items() if {q} == qmax]
    if not bits:
        raise ValueError(f"not one weight range of a quantisation-aware model: {sorted(qmax)}")
    return bits[0]


def quantizers(model: nn.Module) -> Iterator[ActivationQuantizer]:
    return (m for m in model.modules() if isinstance(m, ActivationQuantizer))


@contextmanager
def calibrating(model: nn.Module) -> Iterator[None]:
    """Within: the model runs in float and every quantiser widens its range to what it sees."""
    found = list(quantizers(model))
    for q in found:
        q.calibrating = True
    try:
        yield
    finally:
        for q in found:
            q.calibrating = False


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Set every activation range to its min/max over ``batches`` (``[B, 3, H, W]`` float, BGR
    0..255, letterboxed), the float model in eval mode (as PTQ calibrates the float graph).
    Returns the number of images; ranges not reached by them stay unobserved."""
    was_training = model.training
    model.eval()
    count = 0
    try:
        with calibrating(model):
            for q in quantizers(model):
                q.observed.fill_(False)
            for batch in batches:
                model(batch)
                count += batch.shape[0]
    finally:
        model.train(was_training)
    return count
