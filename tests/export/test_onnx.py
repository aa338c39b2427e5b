"""ONNX export: checker-valid files whose ONNX Runtime outputs equal PyTorch's, in-graph NMS that
keeps the PyTorch predictor's boxes, dynamic batch, non-square inputs, metadata."""

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import REPO

from detector import build_model, load_config, load_yolox_weights
from detector.export import ExportModel, export_onnx, read_metadata
from detector.inference import OnnxPredictor, Predictor, postprocess
from detector.utils.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def nano(fixtures_dir, configs_dir):
    """YOLOX-Nano with the official layout's weights (randomised BN and prediction layers: scores vary)."""
    fixture = torch.load(fixtures_dir / "yolox_nano_parity.pt", weights_only=True)
    model = build_model(load_config(configs_dir / "_base_" / "models" / "yolox_nano.yaml"))
    load_yolox_weights(model, fixture["model"])
    return model.eval(), fixture["input"]


def fresh(model):
    copy = build_model(load_config(REPO / "configs" / "_base_" / "models" / "yolox_nano.yaml"))
    copy.load_state_dict(model.state_dict())
    return copy.eval()


def test_raw_outputs_equal_pytorch_with_dynamic_batch(nano, tmp_path):
    model, images = nano  # [2, 3, 416, 416]
    path = export_onnx(fresh(model), tmp_path / "nano.onnx", imgsz=416, dynamic_batch=True)
    onnx.checker.check_model(onnx.load(str(path)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        reference = model(images).numpy()
    np.testing.assert_allclose(session.run(None, {"images": images.numpy()})[0], reference, atol=1e-4, rtol=0)
    batch4 = torch.cat([images, images.flip(-1)])
    with torch.no_grad():
        reference4 = model(batch4).numpy()
    for batch, ref in ((images[:1], reference[:1]), (batch4, reference4)):
        np.testing.assert_allclose(session.run(None, {"images": batch.numpy()})[0], ref, atol=1e-4, rtol=0)


def test_non_square_input_and_metadata_round_trip(nano, tmp_path):
    model, images = nano
    x = torch.nn.functional.interpolate(images, size=(384, 640), mode="bilinear")[:1]
    path = export_onnx(fresh(model), tmp_path / "wide.onnx", imgsz=(384, 640), class_names=[f"c{i}" for i in range(80)])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        reference = model(x).numpy()
    out = session.run(None, {"images": x.numpy()})[0]
    assert out.shape == (1, 48 * 80 + 24 * 40 + 12 * 20, 85)
    np.testing.assert_allclose(out, reference, atol=1e-4, rtol=0)
    meta = read_metadata(path)
    assert meta["imgsz"] == "384,640" and meta["channel_order"] == "BGR" and meta["pixel_range"] == "0..255"
    assert meta["letterbox"] == "top-left" and meta["pad_value"] == "114" and meta["nms"] == "false"
    assert json.loads(meta["class_names"])[:2] == ["c0", "c1"] and meta["dynamic_batch"] == "false"
    predictor = OnnxPredictor(path)
    assert predictor.imgsz == (384, 640) and predictor.class_names[79] == "c79" and not predictor.in_graph_nms
    with pytest.raises(Exception, match="invalid dimensions"):  # the batch size was fixed at export
        predictor.session.run(None, {"images": np.zeros((2, 3, 384, 640), np.float32)})
    assert len(predictor(np.zeros((100, 200, 3), np.uint8))) == 1


class PixelStub(torch.nn.Module):
    """Predictions read off the pixels, so that boxes and scores vary and rarely tie."""

    def forward(self, x):
        flat = x.reshape(x.shape[0], 3, -1)[:, :, :600]
        cx, cy = flat[:, 0] * 2.0, flat[:, 1] * 2.0
        w, h = flat[:, 2] * 0.3 + 5, flat[:, 0] * 0.2 + 5
        obj = torch.sigmoid((flat[:, 1] - 128) / 20)
        cls = torch.softmax(torch.stack([flat[:, 2] / 30, flat[:, 0] / 40, flat[:, 1] / 35], -1), -1)
        return torch.cat([torch.stack([cx, cy, w, h, obj], -1), cls], -1)


@pytest.mark.parametrize(("conf", "max_det"), [(0.05, 40), (0.6, 300)])
def test_in_graph_nms_equals_postprocess(tmp_path, conf, max_det):
    wrapped = ExportModel(PixelStub(), nms=True, conf_threshold=conf, iou_threshold=0.5, max_det=max_det).eval()
    path = tmp_path / "stub.onnx"
    names = ["boxes", "scores", "labels", "num_dets"]
    torch.onnx.export(
        wrapped, (torch.zeros(1, 3, 64, 64),), str(path), input_names=["images"], output_names=names,
        opset_version=17, dynamo=False, dynamic_axes={n: {0: "b"} for n in ["images", *names]},
    )  # fmt: skip
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 255
    boxes, scores, labels, counts = session.run(None, {"images": x.numpy()})
    reference = postprocess(PixelStub()(x), conf, 0.5, max_det)
    assert boxes.shape == (4, min(max_det, 600), 4)
    for b in range(4):
        k = int(counts[b])
        assert k == len(reference[b]) and k > 0
        np.testing.assert_allclose(boxes[b, :k], reference[b].boxes.numpy(), atol=1e-4)
        np.testing.assert_array_equal(labels[b, :k], reference[b].labels.numpy())
        np.testing.assert_allclose(scores[b, :k], reference[b].scores.numpy(), atol=1e-6)
        assert np.all(labels[b, k:] == -1) and np.all(scores[b, k:] == 0) and np.all(boxes[b, k:] == 0)


def test_onnx_predictor_with_nms_keeps_the_pytorch_predictor_boxes_on_images(tmp_path):
    # The stub stands in for a trained network: randomly initialised ones score nearly every
    # box alike, and ties make the kept set depend on the order of equal scores.
    path = export_onnx(PixelStub(), tmp_path / "nms.onnx", imgsz=64, dynamic_batch=True, nms=True,
                       conf_threshold=0.2, iou_threshold=0.6, max_det=50)  # fmt: skip
    onnx_predictor = OnnxPredictor(path, conf_threshold=0.2)
    assert onnx_predictor.in_graph_nms and onnx_predictor.dynamic_batch
    torch_predictor = Predictor(PixelStub(), imgsz=64, conf_threshold=0.2, iou_threshold=0.6, max_det=50)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in ((64, 64), (48, 80), (90, 60))]
    for det, ref in zip(onnx_predictor(images), torch_predictor(images), strict=True):
        assert len(det) == len(ref) > 0
        torch.testing.assert_close(det.boxes, ref.boxes, atol=1e-4, rtol=0)
        torch.testing.assert_close(det.scores, ref.scores, atol=1e-6, rtol=0)
        assert torch.equal(det.labels, ref.labels)
    # Without NMS in the graph the ONNX predictor runs the same postprocess as PyTorch.
    raw_path = export_onnx(PixelStub(), tmp_path / "raw.onnx", imgsz=64)
    raw = OnnxPredictor(raw_path, conf_threshold=0.2, iou_threshold=0.6, max_det=50)
    for det, ref in zip(raw(images), torch_predictor(images), strict=True):
        torch.testing.assert_close(det.boxes, ref.boxes, atol=1e-4, rtol=0)


def test_onnx_predictor_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.onnx: ONNX model not found"):
        OnnxPredictor(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="junk.onnx: not a loadable ONNX model"):
        OnnxPredictor(tmp_path / "junk.onnx")


def test_export_tool_from_a_checkpoint_and_its_errors(nano, tmp_path):
    model, _ = nano
    cfg = load_config(REPO / "configs" / "_base_" / "models" / "yolox_nano.yaml")
    cfg["data"] = {"imgsz": 320}
    save_checkpoint({"config": cfg, "model": model.state_dict(), "class_names": [str(i) for i in range(80)]},
                    tmp_path / "m.pt")  # fmt: skip
    cmd = [sys.executable, str(REPO / "tools" / "export.py"), "--ckpt", str(tmp_path / "m.pt")]
    result = subprocess.run([*cmd, "--out", str(tmp_path / "m.onnx"), "--nms", "--dynamic-batch"],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    meta = read_metadata(tmp_path / "m.onnx")
    assert meta["imgsz"] == "320,320" and meta["nms"] == "true" and meta["conf_threshold"] == "0.25"
    result = subprocess.run([*cmd, "--out", str(tmp_path / "x.onnx"), "--imgsz", "300"], capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert (
        result.returncode == 2 and result.stderr.strip() == "error: --imgsz: 300x300 (h x w); expected multiples of 32"
    )
    assert not (tmp_path / "x.onnx").exists()
