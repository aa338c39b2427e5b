"""INT8 post-training static quantization of an exported ONNX detector (ONNX Runtime's tools).

Activations are calibrated on real images letterboxed exactly as the model is fed (BGR,
0..255, top-left on 114, at the input size in the model's metadata); weights are quantized
per output channel. The result is in QDQ format (QuantizeLinear / DequantizeLinear pairs around
each quantized op), which ONNX Runtime runs with INT8 kernels and other runtimes can read.
"""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from detector.data.transforms import letterbox
from detector.export.align import sqnr_db, with_intermediate_outputs
from detector.export.onnx import INT8_WEIGHTS, read_metadata
from detector.models.heads.yolox_head import YOLOXHead
from detector.utils.fileio import atomic_write


def decode_tail(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes after the network's last convolutions: those with no Conv among the
    nodes that consume their outputs, directly or further down (the head's decoding)."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    feeds_conv: dict[str, bool] = {}

    def reaches_conv(node: onnx.NodeProto) -> bool:
        key = node.name or node.output[0]
        if key not in feeds_conv:
            feeds_conv[key] = False  # graphs are acyclic; this only guards re-entry
            feeds_conv[key] = any(
                nxt.op_type == "Conv" or reaches_conv(nxt) for out in node.output for nxt in consumers.get(out, [])
            )
        return feeds_conv[key]

    return [n.name for n in model.graph.node if n.op_type != "Conv" and not reaches_conv(n)]


class ImageCalibration(CalibrationDataReader):
    """Feeds ``images`` (uint8 HWC BGR) one at a time as the model's ``images`` input."""

    def __init__(self, images: Iterable[np.ndarray], imgsz: Sequence[int], input_name: str = "images") -> None:
        self._images: Iterator[np.ndarray] = iter(images)
        self.imgsz = tuple(imgsz)
        self.input_name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        image = next(self._images, None)
        if image is None:
            return None
        canvas, _ = letterbox(image, self.imgsz)
        return {self.input_name: canvas.transpose(2, 0, 1)[None].astype(np.float32)}


def with_activations(graph: onnx.ModelProto, convs: Sequence[str]) -> list[str]:
    """``convs`` and the nodes of their blocks' activations (``.../pconv/conv/Conv`` ->
    ``.../pconv/act/*``): a conv kept in float keeps its activation in float too, or the
    activation's quantised output would carry the INT8 error on to the next layer anyway."""
    blocks = [name[: -len("conv/Conv")] + "act/" for name in convs if name.endswith("/conv/Conv")]
    acts = [n.name for n in graph.graph.node if any(n.name.startswith(block) for block in blocks)]
    return [*convs, *acts]


def box_prediction_convs(graph: onnx.ModelProto) -> list[str]:
    """The head's box/objectness prediction convs (``YOLOXHead.BOX_PREDICTIONS``) by node name."""
    marks = [f"/head/{name}." for name in YOLOXHead.BOX_PREDICTIONS]
    return [n.name for n in graph.graph.node if n.op_type == "Conv" and any(m in n.name for m in marks)]


def int8_convolution_overflows(machine: str | None = None, cpu_flags: set[str] | None = None) -> bool:
    """Whether ONNX Runtime's uint8 x int8 convolution can overflow on this CPU (or on one of
    ``machine`` with ``cpu_flags``, as in /proc/cpuinfo): on x86 without VNNI it multiplies with
    VPMADDUBSW, whose int16 sums of two products saturate for 8-bit weights (2 x 255 x 127 >
    32767; ORT's quantisation guide suggests 7-bit weights there). With VNNI, or off x86, the
    sums are int32."""
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64"):
        return False
    if cpu_flags is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
            cpu_flags = set(next(line for line in cpuinfo if line.startswith("flags")).split())
        except (OSError, StopIteration):
            return False  # not Linux: unknown, assume a current CPU
    return not {"avx512_vnni", "avx_vnni"} & cpu_flags


CALIBRATION_METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                       "percentile": CalibrationMethod.Percentile}  # fmt: skip


def quantize_int8(
    model_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    images: Iterable[np.ndarray] | None,
    method: str = "minmax",
    keep_float: Sequence[str] = (),
    only: Sequence[str] | None = None,
    calibration_cache: str | os.PathLike[str] | None = None,
    float_box_predictions: bool = True,
    weight_bits: int = 8,
) -> Path:
    """Quantize ``model_path`` (from ``export_onnx``) to INT8 QDQ at ``out_path``, calibrated on
    ``images``; ``method``: ``minmax``, ``entropy`` or ``percentile`` (ONNX Runtime's calibrators).
    ``keep_float``: convs left in float with their activations (besides the decode tail); ``only``: quantize just these
    nodes. ``calibration_cache``: a file of the activation ranges, written by the first call and
    read (``images`` then unused, may be None) by the next ones on the same model.
    ``float_box_predictions``: keep the head's box/objectness prediction convs in float (see
    ``YOLOXHead.BOX_PREDICTIONS``). ``weight_bits``: 8, or 7 (ONNX Runtime's ``reduce_range``, weights
    within +-64: exact on x86 CPUs without VNNI, whose u8 x s8 kernel saturates 8-bit weights'
    int16 pair sums). The metadata is kept, with ``quantization`` added. Written
    atomically; returns ``out_path``."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"--method: expected one of {', '.join(CALIBRATION_METHODS)}, got {method!r}")
    if weight_bits not in INT8_WEIGHTS:
        raise ValueError(f"--weight-bits: expected 8 or 7, got {weight_bits!r}")
    metadata = read_metadata(model_path)
    if "imgsz" not in metadata:
        raise ValueError(f"{model_path}: no 'imgsz' in the model metadata; export it with tools/export.py")
    imgsz = [int(v) for v in metadata["imgsz"].split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model_path), str(prepared), skip_symbolic_shape=True)
        quantized = Path(tmp) / "int8.onnx"
        graph = onnx.load(str(prepared))
        box_float = box_prediction_convs(graph) if float_box_predictions and only is None else []
        quantize_static(
            str(prepared),
            str(quantized),
            ImageCalibration(images, imgsz) if images is not None else None,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=weight_bits == 7,
            calibrate_method=CALIBRATION_METHODS[method],
            # The decode tail stays in float: exp, grid offsets and the concat of box pixels with
            # probabilities into one tensor share one scale per tensor, and 8 bits lose the
            # probabilities entirely (measured: mAP50-95 0.487 -> 0.260 with it quantized).
            nodes_to_exclude=[*decode_tail(graph), *with_activations(graph, keep_float), *box_float],
            nodes_to_quantize=list(only) if only is not None else None,
            calibration_cache_path=str(calibration_cache) if calibration_cache is not None else None,
        )
        proto = onnx.load(str(quantized))
        kept = f", {len(keep_float)} layers kept in float" if keep_float else ""
        kept += ", box predictions in float" if box_float else ""
        metadata["quantization"] = f"int8 static QDQ, {INT8_WEIGHTS[weight_bits]}, {method} calibration{kept}"
        onnx.helper.set_model_props(proto, metadata)
        data = proto.SerializeToString()
    return atomic_write(out_path, lambda f: f.write(data), binary=True)


@dataclass
class LayerSensitivity:
    """One conv quantised alone: its ONNX node and the SQNR (dB) of the head's raw outputs (the
    prediction convs' logits and box offsets, before the decoding saturates them) against the
    float model's."""

    node: str
    sqnr_db: float


def prediction_outputs(graph: onnx.ModelProto) -> list[str]:
    """The tensors the decode tail starts from: outputs of nodes outside it read by nodes in it."""
    tail = set(decode_tail(graph))
    produced_outside = {out: n.name for n in graph.graph.node if n.name not in tail for out in n.output}
    return sorted({name for n in graph.graph.node if n.name in tail for name in n.input if name in produced_outside})


def layer_sensitivity(
    model_path: str | os.PathLike[str],
    calibration: Sequence[np.ndarray],
    evaluation: Sequence[np.ndarray],
    method: str = "minmax",
    progress: bool = False,
    weight_bits: int = 8,
) -> list[LayerSensitivity]:
    """Quantise each Conv of ``model_path`` alone (its input, weights and output; activation
    ranges calibrated once on ``calibration``) and score the head's raw outputs on ``evaluation``
    images against the float model's (``weight_bits`` as :func:`quantize_int8`). Most sensitive
    (lowest SQNR) first."""
    import onnxruntime as ort
    from tqdm import tqdm

    metadata = read_metadata(model_path)
    imgsz = [int(v) for v in metadata["imgsz"].split(",")]
    batch = [feed["images"] for feed in iter(ImageCalibration(evaluation, imgsz).get_next, None)]
    graph = onnx.load(str(model_path))
    heads = prediction_outputs(graph)

    def outputs(path: str | os.PathLike[str]) -> np.ndarray:
        exposed = with_intermediate_outputs(onnx.load(str(path)), heads)
        session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
        return np.concatenate([np.concatenate([o.ravel() for o in session.run(heads, {"images": x})]) for x in batch])

    reference = outputs(model_path)
    tail = set(decode_tail(graph))
    convs = [n.name for n in graph.graph.node if n.op_type == "Conv" and n.name not in tail]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "ranges.json"
        quantize_int8(model_path, Path(tmp) / "all.onnx", calibration, method, calibration_cache=cache,
                      weight_bits=weight_bits)  # fmt: skip
        for node in tqdm(convs, desc="sensitivity", disable=not progress):
            single = quantize_int8(model_path, Path(tmp) / "one.onnx", None, method, only=[node],
                                   calibration_cache=cache, weight_bits=weight_bits)  # fmt: skip
            results.append(LayerSensitivity(node, sqnr_db(reference, outputs(single))))
    return sorted(results, key=lambda r: r.sqnr_db)
