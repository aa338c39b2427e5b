"""PyTorch <-> ONNX alignment: where an exported model's numbers part from the PyTorch model's.

Every float tensor an ONNX node produces is exposed as an extra graph output and compared with
the output of the PyTorch module the node belongs to. The exporter names each node by its module
scope (``/model/backbone/dark2/dark2.0/conv/Conv``); the module is ``backbone.dark2.0.conv`` and
its output is the last node of exactly that scope (the ``Mul`` of a SiLU, the ``Add`` of a
residual bottleneck). Rows follow the graph's order, so the first row over the tolerance is the
first place the two computations differ. Works for fp32 and QDQ INT8 graphs (the INT8 numbers
are the QDQ graph's, run unfused: dequantised tensors through float operators).

The preprocessing the file declares (metadata) is checked against the PyTorch predictor's
conventions (``PREPROCESS``: BGR, 0..255, no normalisation, top-left letterbox on 114) and the
input against the NCHW, 3-channel layout at the config's input size.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from torch import nn

from detector.export.onnx import PREPROCESS

#: The scope of the exported wrapper's detector (``ExportModel.model``).
ROOT_SCOPE = "model"


@dataclass
class AlignedTensor:
    """One compared tensor: the ONNX node and tensor, the PyTorch module, the largest absolute
    difference, that difference relative to the largest PyTorch magnitude, and the SQNR in dB
    (PyTorch as signal, the difference as noise)."""

    node: str
    tensor: str
    module: str
    max_abs: float
    relative: float
    sqnr_db: float


def scope_modules(node_name: str, module_names: set[str]) -> list[tuple[str, int]]:
    """The modules an exported node lies in, outermost first, each with its call index.

    ``/model/backbone/dark2/dark2.0/dconv/conv/Conv`` -> ``backbone``, ``backbone.dark2.0``,
    ``backbone.dark2.0.dconv``, ``backbone.dark2.0.dconv.conv`` (call 0 each): a container's child
    appears as a segment of its own (``dark2``) then with its index (``dark2.0``), which
    replaces it. A module called again
    gets a suffix (``m.0_1``: the second call of ``m.0``), kept as the call index when
    ``module_names`` knows the name without it.
    """
    segments = node_name.strip("/").split("/")[:-1]  # the last segment is the operator
    if not segments or segments[0] != ROOT_SCOPE:
        return []
    merged: list[str] = []
    for segment in segments[1:]:
        if merged and segment.startswith(merged[-1] + "."):
            merged[-1] = segment
        else:
            merged.append(segment)
    scopes, path = [], ""
    for segment in merged:
        call = 0
        candidate = f"{path}.{segment}" if path else segment
        base, _, suffix = segment.rpartition("_")
        if candidate not in module_names and base and suffix.isdigit():
            call, candidate = int(suffix), f"{path}.{base}" if path else base
        if candidate not in module_names:
            break  # a scope this model does not have: stop at what is known
        path = candidate
        scopes.append((path, call))
    return scopes


def module_outputs_by_node(graph: onnx.GraphProto, module_names: set[str]) -> dict[tuple[str, int], tuple[str, str]]:
    """``{(module path, call): (node name, output tensor)}``: the last node (graph order) inside
    each module call's scope produces its output. Where several modules share that tensor (a
    block and its last conv), the innermost keeps it."""
    outputs: dict[tuple[str, int], tuple[str, str]] = {}
    for node in graph.node:
        if not node.output or node.op_type in ("Constant", "QuantizeLinear"):
            continue
        for key in scope_modules(node.name, module_names):
            outputs[key] = (node.name, node.output[0])
    innermost: dict[str, tuple[str, int]] = {}
    for key, (_, tensor) in outputs.items():
        if tensor not in innermost or len(key[0]) > len(innermost[tensor][0]):
            innermost[tensor] = key
    return {key: outputs[key] for key in innermost.values()}


def with_intermediate_outputs(model: onnx.ModelProto, tensors: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` whose graph also outputs ``tensors`` (float, shapes left to ONNX Runtime)."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    existing = {o.name for o in exposed.graph.output}
    for name in tensors:
        if name not in existing:
            exposed.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return exposed


def pytorch_module_outputs(
    model: nn.Module, images: torch.Tensor, names: set[str]
) -> dict[tuple[str, int], torch.Tensor]:
    """``{(module, call): output}`` of ``model``'s modules called ``names`` (every call of a
    module called more than once), and the whole model's output under ``("", 0)``, for
    ``images`` in eval mode."""
    modules = dict(model.named_modules())
    recorded: dict[tuple[str, int], torch.Tensor] = {}
    calls: dict[str, int] = {}
    handles = []
    for name in names:
        if name in modules and name:

            def record(module: nn.Module, args: object, output: object, name: str = name) -> None:
                call = calls.get(name, 0)
                calls[name] = call + 1
                if isinstance(output, torch.Tensor):
                    recorded[(name, call)] = output.detach()

            handles.append(modules[name].register_forward_hook(record))
    try:
        with torch.no_grad():
            recorded[("", 0)] = model.eval()(images)
    finally:
        for handle in handles:
            handle.remove()
    return recorded


def sqnr_db(reference: np.ndarray, value: np.ndarray) -> float:
    """Signal-to-quantisation-noise ratio in dB (``reference`` as the signal)."""
    reference, value = reference.astype(np.float64), value.astype(np.float64)
    noise = float(((value - reference) ** 2).sum())
    return float("inf") if noise == 0 else 10 * np.log10(max(float((reference**2).sum()), 1e-30) / noise)


def compare(reference: np.ndarray, value: np.ndarray) -> tuple[float, float, float]:
    """``(max |difference|, that over max |reference|, SQNR dB)``."""
    diff = np.abs(value.astype(np.float64) - reference.astype(np.float64))
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(reference).max()) if reference.size else 0.0
    return max_abs, max_abs / max(scale, 1e-12), sqnr_db(reference, value)


def align(
    onnx_path: str | os.PathLike[str], model: nn.Module, images: torch.Tensor
) -> tuple[list[AlignedTensor], list[str]]:
    """Run ``images`` (float ``[1, 3, H, W]``, BGR 0..255) through the ONNX file and the PyTorch
    ``model`` (fused here, as the exporter does). Returns the aligned tensors in graph order
    (the graph's first output last, under module ``(output)``) and the modules the graph has
    no tensor for in PyTorch (shapes that differ are listed there too)."""
    import onnxruntime as ort

    graph_model = onnx.load(str(onnx_path))
    model = model.cpu().eval()
    if hasattr(model, "fuse"):
        model.fuse()
    by_module = module_outputs_by_node(graph_model.graph, {name for name, _ in model.named_modules() if name})
    torch_outputs = pytorch_module_outputs(model, images, {name for name, _ in by_module})
    order = {node.name: i for i, node in enumerate(graph_model.graph.node)}
    matched = sorted((m for m in by_module if m in torch_outputs), key=lambda m: order[by_module[m][0]])
    unmatched = [_label(m) for m in by_module if m not in torch_outputs]
    exposed = with_intermediate_outputs(graph_model, [by_module[m][1] for m in matched])
    session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    final = graph_model.graph.output[0].name
    wanted = [by_module[m][1] for m in matched] + [final]
    values = dict(zip(wanted, session.run(wanted, {session.get_inputs()[0].name: images.numpy()}), strict=True))
    rows = []
    for key in matched:
        node, tensor = by_module[key]
        reference = torch_outputs[key].numpy()
        if values[tensor].shape != reference.shape:
            unmatched.append(f"{_label(key)} (ONNX {list(values[tensor].shape)}, PyTorch {list(reference.shape)})")
            continue
        rows.append(AlignedTensor(node, tensor, _label(key), *compare(reference, values[tensor])))
    full = torch_outputs[("", 0)]
    if isinstance(full, torch.Tensor) and tuple(full.shape) == values[final].shape:
        rows.append(AlignedTensor(final, final, "(output)", *compare(full.numpy(), values[final])))
    return rows, unmatched


def _label(key: tuple[str, int]) -> str:
    return key[0] if key[1] == 0 else f"{key[0]} (call {key[1] + 1})"


def first_mismatch(rows: list[AlignedTensor], tolerance: float) -> AlignedTensor | None:
    """The first row (graph order) whose relative difference exceeds ``tolerance``."""
    return next((row for row in rows if row.relative > tolerance), None)


def is_quantized(onnx_path: str | os.PathLike[str]) -> bool:
    """Whether the graph has QuantizeLinear / DequantizeLinear nodes (a QDQ INT8 model)."""
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in graph.node)


def check_conventions(
    metadata: Mapping[str, str], input_shape: list[int | str | None], imgsz: tuple[int, int]
) -> list[str]:
    """Where the file's declared preprocessing and input differ from what the PyTorch predictor
    does (``PREPROCESS``) at the config's input size ``(h, w)``: one line per difference."""
    problems = []
    for key, expected in PREPROCESS.items():
        declared = metadata.get(key)
        if declared is None:
            problems.append(f"metadata '{key}' missing; the PyTorch predictor uses {expected}")
        elif declared != expected:
            problems.append(f"metadata '{key}' is {declared}; the PyTorch predictor uses {expected}")
    if len(input_shape) != 4 or input_shape[1] != 3:
        problems.append(f"input shape {input_shape}; the PyTorch model takes [B, 3, H, W] (NCHW, 3 channels)")
    elif all(isinstance(d, int) for d in input_shape[2:]) and tuple(input_shape[2:]) != tuple(imgsz):
        problems.append(f"input {input_shape[2]}x{input_shape[3]}; the config's data.imgsz is {imgsz[0]}x{imgsz[1]}")
    declared_size = metadata.get("imgsz")
    if declared_size is not None and tuple(int(v) for v in declared_size.split(",")) != tuple(imgsz):
        problems.append(f"metadata 'imgsz' is {declared_size}; the config's data.imgsz is {imgsz[0]},{imgsz[1]}")
    return problems


def format_alignment(rows: list[AlignedTensor], mismatch: AlignedTensor | None, tolerance: float,
                     show: int = 12) -> str:  # fmt: skip
    """A markdown table around the first mismatch (or the worst rows) and a one-line verdict."""
    if mismatch is not None:
        at = rows.index(mismatch)
        shown = rows[max(0, at - 3) : at + show - 3]
    else:
        shown = sorted(rows, key=lambda r: r.relative, reverse=True)[:show]
    lines = ["| # | module | ONNX node | max abs diff | relative | SQNR dB |", "|---:|---|---|---:|---:|---:|"]
    for row in shown:
        mark = " **<- first over tolerance**" if row is mismatch else ""
        lines.append(f"| {rows.index(row)} | {row.module}{mark} | {row.node} | {row.max_abs:.3g} | {row.relative:.3g} "
                     f"| {row.sqnr_db:.1f} |")  # fmt: skip
    if mismatch is None:
        verdict = f"all {len(rows)} aligned tensors within relative {tolerance:g} (worst shown)"
    else:
        verdict = (f"first difference over relative {tolerance:g}: module '{mismatch.module}' "
                   f"(ONNX node {mismatch.node}), relative {mismatch.relative:.3g}")  # fmt: skip
    return "\n".join([*lines, "", verdict])
