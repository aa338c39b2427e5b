"""The PyTorch <-> ONNX alignment debugger: scopes resolved to modules (containers, repeated
calls), an exact export aligned everywhere, planted mismatches found at the right module (a
swapped channel order in one conv, BGR/RGB swapped at the stem), INT8 graphs compared through
their dequantised tensors, and the preprocessing conventions checked against the predictor's."""

import copy

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from detector import build_model, load_config
from detector.commands import align as align_command
from detector.data.synthetic import CLASS_NAMES, render_image
from detector.export import export_onnx
from detector.export.align import align, check_conventions, first_mismatch, is_quantized, scope_modules
from detector.export.onnx import PREPROCESS
from detector.export.quantize import quantize_int8
from detector.utils.checkpoint import save_checkpoint

IMGSZ = 96


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A YOLOX-Nano (5 classes) with non-trivial BatchNorms, its checkpoint and its ONNX export."""
    root = tmp_path_factory.mktemp("align")
    cfg = load_config("yolox_nano_shapes", overrides={"data.imgsz": IMGSZ})
    torch.manual_seed(0)
    model = build_model(cfg)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    ckpt = root / "model.pt"
    save_checkpoint({"config": cfg, "model": model.state_dict()}, ckpt)
    path = export_onnx(copy.deepcopy(model), root / "model.onnx", imgsz=IMGSZ)
    return model, ckpt, path


def image_batch():
    image = render_image(IMGSZ, IMGSZ, np.random.default_rng(1), CLASS_NAMES)[0]
    return torch.from_numpy(image.transpose(2, 0, 1).copy())[None].float()


def test_scopes_resolve_containers_and_repeated_calls():
    names = {"backbone", "backbone.dark2", "backbone.dark2.0", "backbone.dark2.0.dconv", "backbone.dark2.0.dconv.conv",
             "backbone.dark5", "backbone.dark5.1", "backbone.dark5.1.m", "backbone.dark5.1.m.0"}  # fmt: skip
    assert scope_modules("/model/backbone/dark2/dark2.0/dconv/conv/Conv", names) == [
        ("backbone", 0),
        ("backbone.dark2.0", 0),
        ("backbone.dark2.0.dconv", 0),
        ("backbone.dark2.0.dconv.conv", 0),
    ]
    assert scope_modules("/model/backbone/dark5/dark5.1/m.0_2/MaxPool", names)[-1] == ("backbone.dark5.1.m.0", 2)
    assert (
        scope_modules("/model/Concat_8", names) == [] and scope_modules("onnx::Conv_12_DequantizeLinear", names) == []
    )


def test_exact_export_aligns_and_planted_channel_swap_is_found_at_its_conv(exported, tmp_path):
    model, _, path = exported
    rows, unmatched = align(path, copy.deepcopy(model), image_batch())
    assert len(rows) > 150 and first_mismatch(rows, 1e-4) is None
    assert rows[-1].module == "(output)" and unmatched == ["head"]  # the head returns a list of maps
    assert {"backbone.dark5.1.m.0 (call 2)", "backbone.dark3.1.m.0"} <= {r.module for r in rows}
    # Swap two output channels of one conv's weights in the file: the first difference is there.
    graph = onnx.load(str(path))
    target = "/model/backbone/dark3/dark3.1/m/m.0/conv1/conv/Conv"
    node = next(n for n in graph.graph.node if n.name == target)
    init = next(i for i in graph.graph.initializer if i.name == node.input[1])
    weights = numpy_helper.to_array(init).copy()
    weights[[0, 1]] = weights[[1, 0]]
    init.CopyFrom(numpy_helper.from_array(weights, init.name))
    planted = tmp_path / "planted.onnx"
    onnx.save(graph, str(planted))
    rows, _ = align(planted, copy.deepcopy(model), image_batch())
    mismatch = first_mismatch(rows, 1e-3)
    assert mismatch.module == "backbone.dark3.1.m.0.conv1.conv" and mismatch.node == target
    assert all(r.relative < 1e-4 for r in rows[: rows.index(mismatch)])


def test_rgb_swapped_at_the_stem_is_found_first_and_reported_by_the_command(exported, tmp_path, capsys):
    model, ckpt, path = exported
    graph = onnx.load(str(path))
    stem = next(n for n in graph.graph.node if n.op_type == "Conv")
    init = next(i for i in graph.graph.initializer if i.name == stem.input[1])
    weights = numpy_helper.to_array(init).copy()
    # Focus folded into the stem conv: input channels are B, G, R per 2x2 phase; reverse each triple.
    weights = weights.reshape(weights.shape[0], -1, 3, *weights.shape[2:])[:, :, ::-1].reshape(weights.shape)
    init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(weights), init.name))
    for prop in graph.metadata_props:
        if prop.key == "channel_order":
            prop.value = "RGB"
    planted = tmp_path / "rgb.onnx"
    onnx.save(graph, str(planted))
    assert align_command.main([str(planted), "--ckpt", str(ckpt)]) == 1
    out = capsys.readouterr().out
    assert "first difference over relative 0.001: module 'backbone.stem.conv.conv'" in out
    assert "convention: metadata 'channel_order' is RGB; the PyTorch predictor uses BGR" in out
    assert align_command.main([str(path), "--ckpt", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert "within relative 0.001" in out and "agree with the PyTorch predictor" in out


def test_int8_graph_is_compared_through_its_dequantised_tensors(exported, tmp_path, capsys):
    model, ckpt, path = exported
    rng = np.random.default_rng(0)
    calibration = [render_image(IMGSZ, IMGSZ, rng, CLASS_NAMES)[0] for _ in range(4)]
    int8 = quantize_int8(path, tmp_path / "int8.onnx", calibration)
    assert is_quantized(int8) and not is_quantized(path)
    rows, _ = align(int8, copy.deepcopy(model), image_batch())
    convs = [r for r in rows if r.module.endswith(".conv") and r.node.endswith("DequantizeLinear")]
    assert len(convs) > 50
    # Quantisation error is visible but bounded: every tensor's SQNR is finite and most are clean.
    assert all(r.relative > 0 for r in rows) and np.median([r.sqnr_db for r in rows]) > 15
    align_command.main([str(int8), "--ckpt", str(ckpt), "--tol", "10"])
    assert "within relative 10" in capsys.readouterr().out


def test_conventions_checked_against_the_predictor():
    good = dict(PREPROCESS, imgsz="96,96")
    assert check_conventions(good, [1, 3, 96, 96], (96, 96)) == []
    problems = check_conventions({**good, "pad_value": "0"}, [1, 96, 96, 3], (96, 128))
    assert problems == [
        "metadata 'pad_value' is 0; the PyTorch predictor uses 114",
        "input shape [1, 96, 96, 3]; the PyTorch model takes [B, 3, H, W] (NCHW, 3 channels)",
        "metadata 'imgsz' is 96,96; the config's data.imgsz is 96,128",
    ]
    assert check_conventions({}, [1, 3, 64, 64], (96, 96))[0] == "metadata 'channel_order' missing; the PyTorch " \
        "predictor uses BGR"  # fmt: skip
