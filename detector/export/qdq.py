"""The ONNX graph of a fake-quantised (QAT) model made into the QDQ model PTQ writes.

PyTorch's exporter writes a fake-quantised model as QuantizeLinear/DequantizeLinear pairs whose
scales, zero points and quantised weights are computed by subgraphs from the float weights and
ranges. :func:`fold_qdq_constants` evaluates those subgraphs once and stores the results, as
``detector.export.quantize`` (ONNX Runtime's static quantisation) stores them: int8 weights read
by DequantizeLinear, constant scales and zero points, and conv biases as int32 in units of
input scale x weight scale. ONNX Runtime then fuses the graph into the same INT8 kernels.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def _constant_nodes(graph: onnx.GraphProto) -> tuple[list[onnx.NodeProto], set[str]]:
    """Nodes whose inputs are all constants (initializers or outputs of such nodes), in graph
    order, and every constant tensor's name."""
    constant = {init.name for init in graph.initializer} | {""}  # "" is an omitted optional input
    nodes = []
    for node in graph.node:
        if all(name in constant for name in node.input):
            nodes.append(node)
            constant.update(node.output)
    return nodes, constant


def _evaluate(model: onnx.ModelProto, nodes: list[onnx.NodeProto], names: list[str]) -> dict[str, np.ndarray]:
    """Values of the constant tensors ``names`` (``nodes``: the constant nodes producing them)."""
    if not names:
        return {}
    outputs = [onnx.helper.make_empty_tensor_value_info(name) for name in names]
    graph = onnx.helper.make_graph(nodes, "constants", [], outputs, list(model.graph.initializer))
    # Opset 19 for the reference evaluator, which implements QuantizeLinear/DequantizeLinear only
    # from there on; int8/uint8 quantisation means the same in 13 and 19.
    opsets = [onnx.helper.make_opsetid(o.domain, max(o.version, 19) if o.domain == "" else o.version)
              for o in model.opset_import]  # fmt: skip
    sub = onnx.helper.make_model(graph, opset_imports=opsets)
    return dict(zip(names, ReferenceEvaluator(sub).run(None, {}), strict=True))


def fold_qdq_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` (an exported fake-quantised detector) with every input-independent
    subgraph replaced by its value: QuantizeLinear of a weight becomes the int8 weight itself,
    scales and zero points become initializers; and a Conv reading dequantised input and weights
    gets its float bias as int32 ``round(bias / (input_scale * weight_scale))`` through a
    DequantizeLinear. Nodes and initializers left unused are dropped."""
    const_nodes, constant = _constant_nodes(model.graph)
    const_ids = {id(n) for n in const_nodes}
    live = [n for n in model.graph.node if id(n) not in const_ids]
    read_live = {name for n in live for name in n.input}
    # The weights' DequantizeLinear nodes are constant but stay, reading int8 weights (as in PTQ).
    weight_dqs = [n for n in const_nodes if n.op_type == "DequantizeLinear" and n.output[0] in read_live]
    nodes = [*weight_dqs, *live]
    initializers = {init.name: init for init in model.graph.initializer}
    needed = {name for n in nodes for name in n.input if name in constant and name}
    needed -= {dq.output[0] for dq in weight_dqs}
    values = {name: numpy_helper.to_array(initializers[name]) for name in needed if name in initializers}
    values.update(_evaluate(model, const_nodes, sorted(needed - set(initializers))))

    producer = {out: n for n in nodes for out in n.output}
    rewritten: list[onnx.NodeProto] = []
    for node in nodes:
        x_dq, w_dq = (producer.get(name) for name in node.input[:2]) if len(node.input) == 3 else (None, None)
        if (node.op_type == "Conv" and node.input[2] in values and x_dq is not None and w_dq is not None
                and x_dq.op_type == w_dq.op_type == "DequantizeLinear"):  # fmt: skip
            scale = values[x_dq.input[1]].astype(np.float64) * values[w_dq.input[1]].astype(np.float64)
            bias = values[node.input[2]].astype(np.float64)
            name = f"{node.name}/bias_int32"
            values[f"{name}_quantized"] = np.clip(np.rint(bias / scale), INT32_MIN, INT32_MAX).astype(np.int32)
            values[f"{name}_scale"] = scale.astype(np.float32)
            values[f"{name}_zero_point"] = np.zeros(bias.shape, np.int32)
            rewritten.append(onnx.helper.make_node(
                "DequantizeLinear", [f"{name}_quantized", f"{name}_scale", f"{name}_zero_point"], [name],
                name=f"{name}/DequantizeLinear", axis=0))  # fmt: skip
            node.input[2] = name
        rewritten.append(node)
    used = {name for n in rewritten for name in n.input}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(rewritten)
    del out.graph.initializer[:]
    out.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in values.items() if k in used)
    return out
