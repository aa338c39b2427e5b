"""INT8 static quantization: QDQ model, float decode tail, the predictor runs it, tool errors."""

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import REPO

from detector import build_model, load_config
from detector.commands import quantize as quantize_command
from detector.data.synthetic import CLASS_NAMES, generate_synthetic_coco, render_image
from detector.export import export_onnx, read_metadata
from detector.export.quantize import box_prediction_convs, decode_tail, int8_convolution_overflows, quantize_int8
from detector.inference import OnnxPredictor


def test_int8_model_is_qdq_with_a_float_decode_tail(tmp_path):
    torch.manual_seed(0)
    model = build_model(load_config(REPO / "configs" / "_base_" / "models" / "yolox_nano.yaml"))
    fp32 = export_onnx(model, tmp_path / "nano.onnx", imgsz=128, class_names=list(CLASS_NAMES) * 16)
    rng = np.random.default_rng(0)
    images = [render_image(128, 160, rng, CLASS_NAMES, 6, 12, None)[0] for _ in range(4)]
    int8 = quantize_int8(fp32, tmp_path / "nano_int8.onnx", images)
    proto = onnx.load(str(int8))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("QuantizeLinear") > 50 and ops.count("DequantizeLinear") > 50
    tail = set(decode_tail(onnx.load(str(fp32))))
    assert tail and all(n.op_type not in ("Conv",) for n in onnx.load(str(fp32)).graph.node if n.name in tail)
    # The output is produced by float ops: no DequantizeLinear feeds the last node.
    last = proto.graph.node[-1]
    producers = {o: n for n in proto.graph.node for o in n.output}
    assert all(producers[i].op_type != "DequantizeLinear" for i in last.input if i in producers)
    meta = read_metadata(int8)
    assert meta["imgsz"] == "128,128" and meta["quantization"].startswith("int8 static QDQ")
    # The box/objectness prediction convs stay float (their weights are plain initializers);
    # every other conv reads int8 weights through a DequantizeLinear.
    initializers = {i.name for i in proto.graph.initializer}
    float_convs = sorted(n.name for n in proto.graph.node if n.op_type == "Conv" and n.input[1] in initializers)
    assert float_convs == sorted(box_prediction_convs(proto)) and len(float_convs) == 3
    assert meta["quantization"].endswith("box predictions in float")
    everything = onnx.load(str(quantize_int8(fp32, tmp_path / "all.onnx", images, float_box_predictions=False)))
    plain = {i.name for i in everything.graph.initializer}
    assert not [n for n in everything.graph.node if n.op_type == "Conv" and n.input[1] in plain]
    x = np.stack([im[:128, :128].transpose(2, 0, 1) for im in images]).astype(np.float32)[:1]
    a = ort.InferenceSession(str(fp32)).run(None, {"images": x})[0]
    b = ort.InferenceSession(str(int8)).run(None, {"images": x})[0]
    assert a.shape == b.shape and np.isfinite(b).all()
    # Box centres are grid positions plus small offsets: 8 bits keep them within a few pixels.
    assert np.median(np.abs(a[..., :2] - b[..., :2])) < 4.0
    assert len(OnnxPredictor(int8, conf_threshold=0.0)(images[0])) == 1


def test_quantize_tool_and_its_errors(tmp_path):
    data = generate_synthetic_coco(tmp_path / "data", num_train=3, num_val=1, image_size=64, seed=1)
    model = build_model(
        load_config(REPO / "configs" / "_base_" / "models" / "yolox_nano.yaml", ["model.head.num_classes=5"])
    )
    fp32 = export_onnx(model, tmp_path / "m.onnx", imgsz=64)
    overrides = [f"data.train.ann_file={data['train_ann']}", f"data.train.img_dir={data['train_images']}"]
    cmd = [sys.executable, str(REPO / "tools" / "quantize.py"), str(fp32), "configs/yolox_nano_shapes.yaml"]
    result = subprocess.run([*cmd, "--out", str(tmp_path / "q.onnx"), "--n", "3", "--weight-bits", "7",
                             "--set", *overrides], capture_output=True, text=True, cwd=REPO, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "calibrated on 3 images" in result.stdout and (tmp_path / "q.onnx").is_file()
    assert "per-channel 7-bit weights (reduce_range)" in read_metadata(tmp_path / "q.onnx")["quantization"]
    weights = [onnx.numpy_helper.to_array(i) for i in onnx.load(str(tmp_path / "q.onnx")).graph.initializer
               if i.data_type == onnx.TensorProto.INT8]  # fmt: skip
    assert len(weights) > 50 and max(int(np.abs(w.astype(int)).max()) for w in weights) == 64
    with pytest.raises(ValueError, match="--weight-bits: expected 8 or 7, got 4"):
        quantize_int8(fp32, tmp_path / "b.onnx", [], weight_bits=4)
    result = subprocess.run([*cmd, "--out", str(tmp_path / "r.onnx"), "--n", "0"], capture_output=True, text=True,
                            cwd=REPO, timeout=300)  # fmt: skip
    assert result.returncode == 2 and "--n: expected at least 1 calibration image, got 0" in result.stderr


def test_int8_convolution_overflows_on_x86_without_vnni(tmp_path, monkeypatch, capsys):
    assert int8_convolution_overflows("x86_64", {"avx2", "fma"})
    assert not int8_convolution_overflows("x86_64", {"avx2", "avx512f", "avx512_vnni"})
    assert not int8_convolution_overflows("AMD64", {"avx2", "avx_vnni"})
    assert not int8_convolution_overflows("aarch64", set())
    # detector quantize says so on such a CPU, unless the weights are 7-bit already.
    data = generate_synthetic_coco(tmp_path / "data", num_train=2, num_val=1, image_size=64, seed=1)
    model = build_model(
        load_config(REPO / "configs" / "_base_" / "models" / "yolox_nano.yaml", ["model.head.num_classes=5"])
    )
    fp32 = export_onnx(model, tmp_path / "m.onnx", imgsz=64)
    overrides = [f"data.train.ann_file={data['train_ann']}", f"data.train.img_dir={data['train_images']}"]
    monkeypatch.setattr(quantize_command, "int8_convolution_overflows", lambda: True)
    for bits, noted in (("8", True), ("7", False)):
        argv = [str(fp32), "yolox_nano_shapes", "--out", str(tmp_path / f"q{bits}.onnx"), "--n", "2",
                "--weight-bits", bits, "--set", *overrides]  # fmt: skip
        assert quantize_command.main(argv) == 0
        assert ("quantise with --weight-bits 7" in capsys.readouterr().out) == noted
