"""Cross-layer equalisation: the outputs of ReLU and LeakyReLU models kept (within 1e-10 of the
largest, in float64), each pair's channel ranges made equal, bias absorption moving only what
ReLU lets through, SiLU pairs left alone unless asked for (and then the outputs change), and the
exported ONNX of an equalised model."""

import copy

import numpy as np
import onnxruntime as ort
import pytest
import torch
from spread_models import spread_model as act_model
from torch import nn

from detector.commands import export as export_command
from detector.compress.equalize import _input_ranges, _output_ranges, cross_layer_equalize, equalization_pairs
from detector.models.layers import DepthwiseSeparableConv
from detector.utils.checkpoint import save_checkpoint


def raw(model, x):
    with torch.no_grad():
        return torch.cat([o.flatten(1) for o in model.head(model.features(x))], dim=1)


@pytest.mark.parametrize("act", ["relu", "lrelu"])
@pytest.mark.parametrize("depthwise", [True, False])
def test_homogeneous_pairs_keep_outputs_and_get_equal_ranges(act, depthwise):
    _, model = act_model(act, depthwise)
    # In float64: the rescaling is exact in arithmetic, while float32 kernels round differently
    # on different CPUs (1.2e-5 of the largest output with LeakyReLU on an AVX2-only AMD EPYC).
    model = model.double()
    pairs = list(equalization_pairs(model))
    # Depthwise-separable blocks, bottlenecks and the head's towers (3 levels x 2 towers).
    names = [name for name, _, _ in pairs]
    assert any(n.endswith(".conv1") for n in names) and sum(n.startswith("head.") for n in names) >= 6
    if depthwise:
        assert any(n.endswith(".dconv") for n in names)
    x = torch.rand(2, 3, 96, 128, dtype=torch.float64) * 255
    before = raw(model, x)
    equalised = copy.deepcopy(model)
    report = cross_layer_equalize(equalised, activations=(act,), absorb_bias=False)
    assert report.pairs == len(pairs) and report.skipped == 0
    assert report.spread_after < report.spread_before / 3
    after = raw(equalised, x)
    assert (after - before).abs().max() <= 1e-10 * before.abs().max()
    # Every pair's ranges meet: r1_i = r2_i (after the last sweep, up to the chains' coupling).
    for _, first, second in equalization_pairs(equalised):
        r1, r2 = _output_ranges(first.conv.weight), _input_ranges(second.conv.weight, second.conv.groups)
        assert torch.allclose(r1, r2, rtol=1e-3), (r1 / r2).max()


def test_bias_absorption_moves_the_shift_through_relu():
    """A depthwise-separable ReLU block whose channels 0-3 sit at beta = 4, gamma = 0.5 (c = 2.5):
    with small depthwise weights every pre-activation stays above c, and the moved shift is exact;
    with large ones some fall below c, and the output changes there."""
    for weight_scale, exact in ((1e-3, True), (10.0, False)):
        torch.manual_seed(0)
        block = DepthwiseSeparableConv(8, 8, act="relu").eval()
        bn = block.dconv.bn
        with torch.no_grad():
            block.dconv.conv.weight.mul_(weight_scale)
            bn.weight.copy_(torch.tensor([0.5] * 4 + [1.0] * 4))
            bn.bias.copy_(torch.tensor([4.0] * 4 + [0.0] * 4))
        x = torch.rand(2, 8, 16, 16)
        with torch.no_grad():
            before = block(x)
        plain, absorbed = copy.deepcopy(block), copy.deepcopy(block)
        cross_layer_equalize(plain, ("relu",), absorb_bias=False)
        report = cross_layer_equalize(absorbed, ("relu",), absorb_bias=True)
        assert report.pairs == 1 and report.absorbed_channels == 4
        shift = (plain.dconv.conv.bias - absorbed.dconv.conv.bias)[:4]
        assert torch.all(shift > 0) and torch.all((plain.dconv.conv.bias - absorbed.dconv.conv.bias)[4:] == 0)
        with torch.no_grad():
            error = float((absorbed(x) - before).abs().max() / before.abs().max())
        assert (error < 1e-5) if exact else (error > 1e-3), error


def test_silu_pairs_are_skipped_unless_asked_and_then_change_outputs():
    _, model = act_model("silu")
    x = torch.rand(1, 3, 96, 96) * 255
    before = raw(model, x)
    untouched = copy.deepcopy(model)
    report = cross_layer_equalize(untouched)
    assert report.pairs == 0 and report.skipped == len(list(equalization_pairs(model)))
    assert torch.allclose(raw(untouched, x), before, rtol=1e-5, atol=1e-4)
    forced = copy.deepcopy(model)
    assert cross_layer_equalize(forced, activations=("silu",)).pairs > 0
    assert (raw(forced, x) - before).abs().max() > 1e-3 * before.abs().max()


def test_export_with_equalize_matches_the_pytorch_model(tmp_path, capsys):
    cfg, model = act_model("relu")
    # BatchNorm statistics of the data (as after training): activations stay normalised, the
    # decoded boxes finite.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        model.train()(torch.rand(4, 3, 96, 96) * 255)
    model.eval()
    cfg["data"]["imgsz"] = 96
    ckpt = tmp_path / "relu.pt"
    save_checkpoint({"config": cfg, "model": model.state_dict()}, ckpt)
    out = tmp_path / "relu.onnx"
    assert export_command.main(["--ckpt", str(ckpt), "--out", str(out), "--equalize"]) == 0
    assert "equalised" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["equalization"].startswith(f"{len(list(equalization_pairs(model)))} conv pairs")
    # The file holds the equalised model (bias absorption is not exact: compare with it).
    equalised = copy.deepcopy(model)
    cross_layer_equalize(equalised)
    x = torch.rand(1, 3, 96, 96) * 255
    with torch.no_grad():
        reference = equalised(x).numpy()
    got = session.run(None, {"images": x.numpy()})[0]
    assert np.abs(got - reference).max() <= 2e-3 * np.abs(reference).max()
