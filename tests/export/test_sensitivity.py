"""INT8 sensitivity: each conv quantised alone, ranked by the SQNR of the outputs; a conv made
deliberately fragile (an activation outlier on an input channel it ignores: the float outputs do
not change, but one INT8 scale must cover the outlier) comes first, and keeping the most sensitive
convs in float (``detector quantize --keep-float K``) brings the INT8 outputs closer to float."""

import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from detector import build_model, load_config
from detector.data.synthetic import CLASS_NAMES, render_image
from detector.export import export_onnx
from detector.export.align import with_intermediate_outputs
from detector.export.quantize import layer_sensitivity, quantize_int8, sqnr_db

IMGSZ = 128
PRODUCER = "/model/backbone/dark4/dark4.0/dconv/conv/Conv"
FRAGILE = "/model/backbone/dark4/dark4.0/pconv/conv/Conv"


@pytest.fixture(scope="module")
def fragile(tmp_path_factory):
    """A YOLOX-Nano whose outputs depend on its input (He-scaled weights, BatchNorm statistics of
    the images, as training leaves them), exported at 128, and its copy with the planted outlier."""
    root = tmp_path_factory.mktemp("sensitivity")
    cfg = load_config("yolox_nano_shapes")
    torch.manual_seed(0)
    model = build_model(cfg)
    images = [render_image(IMGSZ, IMGSZ, np.random.default_rng(i), CLASS_NAMES)[0] for i in range(12)]
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.weight.data.normal_(0, (2 / m.weight[0].numel()) ** 0.5)
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative: the statistics of the batch below
    with torch.no_grad():
        model.train()(torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy()).float())
    path = export_onnx(copy.deepcopy(model), root / "exported.onnx", imgsz=IMGSZ)
    graph = onnx.load(str(path))
    nodes = {n.name: n for n in graph.graph.node}
    inits = {i.name: i for i in graph.graph.initializer}

    def edit(name, change):
        array = numpy_helper.to_array(inits[name]).copy()
        change(array)
        inits[name].CopyFrom(numpy_helper.from_array(array, name))

    edit(nodes[FRAGILE].input[1], lambda w: w[:, 0].fill(0.0))  # the conv ignores its input channel 0
    plain = root / "plain.onnx"
    onnx.save(graph, str(plain))
    edit(nodes[PRODUCER].input[2], lambda b: b.__setitem__(0, b[0] + 200.0))  # which now reads about 200
    planted = root / "fragile.onnx"
    onnx.save(graph, str(planted))
    return plain, planted, images


def tensors(path, images, heads):
    """The tensors ``heads`` for ``images``, flattened."""
    exposed = with_intermediate_outputs(onnx.load(str(path)), heads)
    session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = [{"images": im.transpose(2, 0, 1)[None].astype(np.float32)} for im in images]
    return np.concatenate([np.concatenate([o.ravel() for o in session.run(heads, f)]) for f in feeds])


def run(path, images):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"images": im.transpose(2, 0, 1)[None].astype(np.float32)})[0]
                           for im in images])  # fmt: skip


def test_the_fragile_conv_ranks_first_and_keeping_it_float_helps(fragile, tmp_path):
    plain, planted, images = fragile
    np.testing.assert_allclose(run(planted, images), run(plain, images), atol=1e-3)  # same float model
    report = layer_sensitivity(planted, images[:8], images[8:])
    assert len(report) > 100
    assert {r.node for r in report[:2]} == {PRODUCER, FRAGILE}
    assert report[0].sqnr_db < np.median([r.sqnr_db for r in report]) - 10
    assert all(a.sqnr_db <= b.sqnr_db for a, b in zip(report, report[1:], strict=False))
    # Kept in float with their activations, the two convs no longer add their error: the block's
    # output is as close to float as its (quantised) input allows.
    block_output = [FRAGILE.replace("conv/Conv", "act/Mul_output_0")]
    reference = tensors(planted, images[8:], block_output)
    everything = quantize_int8(planted, tmp_path / "all.onnx", images[:8])
    kept = quantize_int8(planted, tmp_path / "kept.onnx", images[:8], keep_float=[r.node for r in report[:2]])
    full_sqnr = sqnr_db(reference, tensors(everything, images[8:], block_output))
    kept_sqnr = sqnr_db(reference, tensors(kept, images[8:], block_output))
    assert kept_sqnr > full_sqnr + 3, (kept_sqnr, full_sqnr)
    meta = ort.InferenceSession(str(kept), providers=["CPUExecutionProvider"]).get_modelmeta()
    assert "2 layers kept in float" in meta.custom_metadata_map["quantization"]
