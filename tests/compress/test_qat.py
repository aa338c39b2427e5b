"""Quantisation-aware training: the fake quantisers' numbers, where they sit (the exported graph
equals PTQ's QDQ graph op for op and runs with the same ONNX Runtime kernels), the export
matching the fake-quantised PyTorch model within one quantisation step, gradients through the
rounding, and the workflow through the trainer, ``load_detector`` and ``detector export``."""

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml
from spread_models import spread_model
from tool_runs import write_shapes_config

from detector import load_config
from detector.commands import export as export_command
from detector.compress.qat import (
    WEIGHT_QMAX_BY_BITS,
    ActivationQuantizer,
    QuantConv2d,
    calibrate,
    drop_box_prediction_quantisers,
    fake_quantize_bias,
    fake_quantize_weight,
    is_quantization_aware,
    prepare_qat,
    weight_bits_of,
)
from detector.config_sections import parse_config
from detector.data.synthetic import CLASS_NAMES, render_image
from detector.data.transforms import letterbox
from detector.engine.trainer import Trainer
from detector.errors import ConfigError
from detector.export import export_onnx
from detector.export.align import scope_modules, with_intermediate_outputs
from detector.export.quantize import box_prediction_convs, int8_convolution_overflows, quantize_int8
from detector.inference import load_detector
from detector.utils.checkpoint import load_checkpoint

SIZE = 128


def shape_images(count, seed=0):
    rng = np.random.default_rng(seed)
    return [render_image(SIZE, SIZE, rng, CLASS_NAMES)[0] for _ in range(count)]


def batch(images):
    return torch.from_numpy(np.stack([letterbox(im, (SIZE, SIZE))[0] for im in images]).transpose(0, 3, 1, 2)).float()


def ort_session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def optimized_op_types(path, tmp_path):
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / f"{path.stem}_optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return collections.Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)


def test_activation_quantizer_numbers():
    q = ActivationQuantizer(momentum=0.5)
    with torch.no_grad():
        q.calibrating = True
        q(torch.tensor([0.5, 3.0]))
        q(torch.tensor([-1.0, 2.0]))  # the range widens to [-1, 3]
        q.calibrating = False
    scale, zero_point = q.qparams()
    assert float(scale) == pytest.approx(4 / 255) and int(zero_point) == 64  # round(1 / (4/255)) = 64
    q.eval()
    out = q(torch.tensor([0.0, 1.0, 3.0, 5.0, -2.0]))
    expected = (torch.tensor([64.0, 64 + round(255 / 4), 255, 255, 0]) - 64) * (4 / 255)
    assert torch.allclose(out, expected) and out[0] == 0.0  # zero exact; outside the range clamped
    # Training: the range moves halfway (momentum 0.5) toward the batch's; eval leaves it.
    q.train()
    q(torch.tensor([-3.0, 1.0]))
    assert (float(q.min_val), float(q.max_val)) == (-2.0, 2.0)
    q.eval()
    q(torch.tensor([-100.0, 100.0]))
    assert (float(q.min_val), float(q.max_val)) == (-2.0, 2.0)
    # A range that excludes zero is widened to include it.
    positive = ActivationQuantizer()
    positive.calibrating = True
    positive(torch.tensor([2.0, 4.0]))
    positive.calibrating = False
    assert float(positive.qparams()[0]) == pytest.approx(4 / 255) and int(positive.qparams()[1]) == 0


def test_weight_and_bias_rounding_and_gradients():
    weight = torch.tensor([[[[1.27]], [[-0.5]]], [[[0.02]], [[0.01]]]], requires_grad=True)  # [2, 2, 1, 1]
    rounded, scale = fake_quantize_weight(weight)
    assert torch.allclose(scale, torch.tensor([0.01, 0.02 / 127]))
    assert torch.allclose(rounded[0].flatten(), torch.tensor([1.27, -0.5]))  # 127 and -50 steps
    # A bias the int32 range cannot hold at that weight scale raises the channel's scale.
    bias = torch.tensor([0.0, 1000.0], requires_grad=True)
    _, floored = fake_quantize_weight(weight, bias, torch.tensor(1e-4))
    assert float(floored[1]) == pytest.approx(1000.0 / (1e-4 * 2**30)) and float(floored[0]) == pytest.approx(0.01)
    q_bias = fake_quantize_bias(torch.tensor([0.0104, -0.0126]), torch.tensor(0.5), torch.tensor([0.01, 0.01]))
    assert torch.allclose(q_bias, torch.tensor([0.01, -0.015]))  # multiples of 0.5 * 0.01
    # Gradients pass straight through the rounding.
    (rounded * torch.arange(4.0).reshape(2, 2, 1, 1)).sum().backward()
    assert torch.equal(weight.grad.flatten(), torch.arange(4.0))


@pytest.fixture(scope="module", params=[8, 7], ids=["8-bit", "7-bit"])
def exported(tmp_path_factory, request):
    """A calibrated QAT Nano (spread statistics) with 8- or 7-bit weights, its ONNX export, and
    PTQ of its float export on the same calibration images with the same weight bits."""
    tmp = tmp_path_factory.mktemp(f"qat{request.param}")
    model = spread_model()[1]
    images = shape_images(12)
    export_onnx(model, tmp / "float.onnx", SIZE)
    quantize_int8(tmp / "float.onnx", tmp / "ptq.onnx", images, weight_bits=request.param)
    qat = prepare_qat(spread_model()[1], weight_bits=request.param)
    assert calibrate(qat, batch(images).split(4)) == 12
    export_onnx(qat, tmp / "qat.onnx", SIZE)
    return tmp, qat.eval(), images


def test_qat_export_is_ptq_graph_with_ptq_kernels(exported):
    tmp, model, _ = exported
    qat, ptq = onnx.load(str(tmp / "qat.onnx")), onnx.load(str(tmp / "ptq.onnx"))
    # The same QDQ graph, node type for node type (PTQ's pre-processing merges transposes in
    # the float decoding): the quantisers sit where PTQ's pairs do.
    count = lambda m: collections.Counter(n.op_type for n in m.graph.node if n.op_type != "Transpose")  # noqa: E731
    assert count(qat) == count(ptq)
    assert count(qat)["QuantizeLinear"] > 300
    # Stored as PTQ stores it: int8 weights, int32 biases; float weights only in the box
    # prediction convs, which both keep in float.
    inits = {i.name: i for i in qat.graph.initializer}
    float_convs = [n.name for n in qat.graph.node if n.op_type == "Conv" and n.input[1] in inits]
    assert (
        sorted(float_convs)
        == sorted(box_prediction_convs(qat))
        == [f"/model/head/box_obj_preds.{i}/Conv" for i in range(3)]
    )
    assert sorted(
        n.name for n in ptq.graph.node if n.op_type == "Conv" and n.input[1] in {i.name for i in ptq.graph.initializer}
    ) == sorted(float_convs)
    bits = weight_bits_of(model)
    for graph in (qat, ptq):
        inits = {i.name: i for i in graph.graph.initializer}
        producer = {out: n for n in graph.graph.node for out in n.output}
        for conv in (n for n in graph.graph.node if n.op_type == "Conv" and n.name not in float_convs):
            weight_dq, bias_dq = producer[conv.input[1]], producer[conv.input[2]]
            assert inits[weight_dq.input[0]].data_type == onnx.TensorProto.INT8
            assert inits[bias_dq.input[0]].data_type == onnx.TensorProto.INT32
            # Symmetric per channel: a channel's largest weight is +-127 (8 bits) or +-64 (7), or
            # less where a large bias sets the scale (QAT).
            weights = onnx.numpy_helper.to_array(inits[weight_dq.input[0]]).astype(int)
            peaks = np.abs(weights).reshape(len(weights), -1).max(axis=1)
            assert peaks.max() <= WEIGHT_QMAX_BY_BITS[bits] and np.mean(peaks == WEIGHT_QMAX_BY_BITS[bits]) > 0.9
    quantization = {m.key: m.value for m in qat.metadata_props}["quantization"]
    assert quantization.startswith("int8 QDQ from quantisation-aware") and ("7-bit" in quantization) == (bits == 7)
    assert ("7-bit" in {m.key: m.value for m in ptq.metadata_props}["quantization"]) == (bits == 7)
    # ONNX Runtime fuses both into the same INT8 kernels (QLinearConv, QLinearSigmoid, ...).
    qat_ops, ptq_ops = optimized_op_types(tmp / "qat.onnx", tmp), optimized_op_types(tmp / "ptq.onnx", tmp)
    del qat_ops["Transpose"], ptq_ops["Transpose"]
    assert qat_ops == ptq_ops
    assert qat_ops["QLinearConv"] == count(qat)["Conv"] - 3 and qat_ops["QLinearSigmoid"] > 100


def test_qat_export_matches_fake_quantised_model_within_one_step(exported):
    """Each conv, given the input ONNX Runtime's INT8 graph gave it, outputs what the INT8 conv
    did within one quantisation step of its output (exact but for rounding ties: the export
    holds the very integers the fake quantisers round to; on x86 CPUs without VNNI, ORT's own
    kernel saturates 8-bit weights' sums on a few convs; 7-bit weights are exact there). End to
    end, a rare tie that rounds the other way moves one value by a step, and the layers after it
    carry that on."""
    tmp, model, images = exported
    graph = onnx.load(str(tmp / "qat.onnx"))
    values = {i.name: onnx.numpy_helper.to_array(i) for i in graph.graph.initializer}
    reader = {name: n for n in graph.graph.node for name in n.input}
    names = {name for name, _ in model.named_modules()}
    convs = {}  # module -> (ORT input tensor, ORT output tensor after its QDQ pair, output step)
    float_convs = box_prediction_convs(graph)
    for node in (n for n in graph.graph.node if n.op_type == "Conv" and n.name not in float_convs):
        dequantized = reader[reader[node.output[0]].output[0]]
        convs[scope_modules(node.name, names)[-1][0]] = (node.input[0], dequantized.output[0],
                                                         float(values[dequantized.input[1]]))  # fmt: skip
    assert len(convs) == sum(isinstance(m, QuantConv2d) for m in model.modules()) > 100
    tensors = sorted({t for ins, out, _ in convs.values() for t in (ins, out)})
    exposed = ort.InferenceSession(with_intermediate_outputs(graph, tensors).SerializeToString(),
                                   providers=["CPUExecutionProvider"])  # fmt: skip
    x = batch(shape_images(1, seed=10))
    ort_values = dict(zip(tensors, exposed.run(tensors, {"images": x.numpy()}), strict=True))
    steps_off = {}

    def feed_ort_input(name):
        def hook(module, args):
            given = torch.from_numpy(ort_values[convs[name][0]])
            if hasattr(args[0], "_qat_grid"):
                given._qat_grid = args[0]._qat_grid  # the same grid, already quantised
            return (given, *args[1:])

        return hook

    def compare_output(name):
        def hook(module, args, output):
            _, out, step = convs[name]
            steps_off[name] = float(np.abs(output.numpy() - ort_values[out]).max()) / step

        return hook

    handles = [h for name in convs for h in (
        model.get_submodule(name).register_forward_pre_hook(feed_ort_input(name)),
        model.get_submodule(name).register_forward_hook(compare_output(name)))]  # fmt: skip
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    assert len(steps_off) == len(convs)
    assert sum(v > 0.001 for v in steps_off.values()) < len(convs) / 2  # most are exact
    if not int8_convolution_overflows() or weight_bits_of(model) == 7:  # 7 bits: 2 x 255 x 64 fits in int16
        assert max(steps_off.values()) <= 1.001, max(steps_off.items(), key=lambda kv: kv[1])
    else:  # ORT's AVX2 kernel saturates int16 pair sums: a few convs off by more, the rest exact
        assert sum(v > 1.001 for v in steps_off.values()) <= len(convs) // 10, steps_off


def test_quantisers_follow_training_and_gradients_reach_every_conv():
    model = prepare_qat(spread_model()[1], momentum=0.1)
    images = batch(shape_images(4))
    calibrate(model, images.split(2))
    first = model.backbone.stem.conv.conv
    assert isinstance(first, QuantConv2d) and is_quantization_aware(model)
    before = float(first.output_quant.max_val)
    model.train()
    out = model.head(model.neck(model.backbone(images * 2)))  # brighter: wider stem outputs
    sum(o.float().pow(2).mean() for o in out).backward()
    assert float(first.output_quant.max_val) > before
    convs = [m for m in model.modules() if isinstance(m, QuantConv2d)]
    assert len(convs) > 100 and all(c.weight.grad is not None and c.weight.grad.abs().sum() > 0 for c in convs)
    # BatchNorms are folded on the fly: their scale and shift train, their statistics stay.
    bn = model.backbone.stem.conv.bn
    assert bn.weight.grad is not None and bn.weight.grad.abs().sum() > 0


def test_box_predictions_stay_float_and_older_checkpoints_still_load(caplog):
    model = prepare_qat(spread_model()[1])
    box = [m for name, m in model.named_modules() if name.startswith("head.box_obj_preds.")]
    assert len(box) == 3 and all(type(m) is torch.nn.Conv2d for m in box)  # not QuantConv2d
    assert all(isinstance(model.head.cls_preds[i], QuantConv2d) for i in range(3))
    # A checkpoint from before (2026-12-02) also holds ranges for those convs: dropped, with a warning.
    state = dict(model.state_dict())
    stale = {
        f"head.box_obj_preds.0.{q}_quant.{k}": torch.zeros(())
        for q in ("input", "output")
        for k in ("min_val", "max_val")
    }
    kept = drop_box_prediction_quantisers({**state, **stale})
    assert kept.keys() == state.keys() and "4 quantiser ranges of the box prediction convs ignored" in caplog.text
    model.load_state_dict(kept)


def test_config_errors():
    with pytest.raises(ConfigError, match="qat.range_momentum: 2.0; expected a number in"):
        parse_config({"qat": {"enabled": True, "range_momentum": 2.0}})
    with pytest.raises(ConfigError, match="enabeld.*enabled"):
        parse_config({"qat": {"enabeld": True}})
    with pytest.raises(ConfigError, match="qat.weight_bits: 4; expected 8 or 7"):
        parse_config({"qat": {"enabled": True, "weight_bits": 4}})
    with pytest.raises(ValueError, match="weight_bits: expected one of \\[7, 8\\], got 6"):
        prepare_qat(spread_model()[1], weight_bits=6)


def test_qat_fine_tune_export_and_reload(tmp_path, capsys):
    """qat.enabled through the trainer from a checkpoint; the run's checkpoint reloads fake
    quantised (load_detector) and `detector export` writes the INT8 model, equal to it."""
    config = write_shapes_config(tmp_path, 8, 4, 96, 3, data={"batch_size": 4, "num_workers": 0},
                                 train={"name": "base", "epochs": 1, "eval_interval": 1, "plots": False,
                                        "keep_freed_memory": False})  # fmt: skip
    cfg = load_config(config)
    Trainer(cfg, device="cpu", progress=False).train()
    base = tmp_path / "runs" / "base" / "weights" / "last.pt"
    cfg["train"].update(name="qat", init_weights=str(base))
    cfg["qat"] = {"enabled": True, "calibration_images": 6}
    Trainer(cfg, device="cpu", progress=False).train()
    run = tmp_path / "runs" / "qat"
    assert "activation ranges calibrated on 6 images of data.train" in (run / "train.log").read_text()
    ckpt = load_checkpoint(run / "weights" / "last.pt")
    assert any(k.endswith("output_quant.max_val") for k in ckpt["model"])
    # The checkpoint's qat section applies whatever config is given with it.
    plain = yaml.safe_load(yaml.safe_dump(ckpt["config"]))
    plain.pop("qat")
    model, _, _ = load_detector(run / "weights" / "last.pt", plain)
    assert is_quantization_aware(model)
    out = tmp_path / "qat.onnx"
    assert export_command.main(["--ckpt", str(run / "weights" / "last.pt"), "--out", str(out)]) == 0
    capsys.readouterr()
    x = batch(shape_images(1))[:, :, :96, :96].contiguous()
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    got = ort_session(out).run(None, {"images": x.numpy()})[0]
    assert np.allclose(got, expected, rtol=1e-3, atol=1e-3)
