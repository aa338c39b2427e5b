"""ONNX export: the BatchNorm-fused model with box decoding in the graph, optionally with
class-aware NMS (ONNX ``NonMaxSuppression``), and the preprocessing written into the metadata.

Without NMS the graph is ``images [B, 3, H, W] -> preds [B, P, 5 + C]`` (cx, cy, w, h input
pixels, objectness, class probabilities), exactly ``Detector.forward`` in eval mode. With NMS
it is ``images -> boxes [B, K, 4] (x1, y1, x2, y2 input pixels), scores [B, K], labels [B, K],
num_dets [B]``: the ``K = max_det`` best kept boxes per image, padded with zeros (labels -1)
after ``num_dets``. Scores are objectness x best class probability, one label per box, as in
``detector.inference.postprocess``.

A quantisation-aware model (``detector.compress.qat``) exports as an INT8 QDQ graph, stored as
post-training quantisation stores one (``detector.export.qdq``).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from detector.data.transforms import to_hw
from detector.export.qdq import fold_qdq_constants
from detector.ops.boxes import cxcywh_to_xyxy
from detector.utils.fileio import atomic_write

#: What the exported model expects, written into its metadata (read back by OnnxPredictor).
PREPROCESS = {"channel_order": "BGR", "pixel_range": "0..255", "normalisation": "none",
              "letterbox": "top-left", "pad_value": "114"}  # fmt: skip


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` in the exported graph. In PyTorch (run only while tracing) it
    returns a placeholder of the right type: the tracer records the op, never its values."""

    @staticmethod
    def forward(ctx: Any, boxes, scores, max_per_class: int, iou_threshold: float, score_threshold: float):  # noqa: ANN001
        return torch.zeros((scores.shape[0], 3), dtype=torch.int64)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class: int, iou_threshold: float, score_threshold: float):  # noqa: ANN001
        # The thresholds go in as graph constants (tensor arguments break the tracer's passes).
        limit = g.op("Constant", value_t=torch.tensor([max_per_class], dtype=torch.int64))
        iou = g.op("Constant", value_t=torch.tensor([iou_threshold], dtype=torch.float32))
        score = g.op("Constant", value_t=torch.tensor([score_threshold], dtype=torch.float32))
        return g.op("NonMaxSuppression", boxes, scores, limit, iou, score)


class ExportModel(nn.Module):
    """``model`` in eval mode, plus in-graph NMS when ``nms``; see the module docstring."""

    def __init__(
        self, model: nn.Module, nms: bool = False, conf_threshold: float = 0.25, iou_threshold: float = 0.65,
        max_det: int = 100,
    ) -> None:  # fmt: skip
        super().__init__()
        self.model = model.eval()
        self.nms = nms
        self.conf_threshold = float(conf_threshold)
        self.iou_threshold = float(iou_threshold)
        self.max_det = int(max_det)

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        preds = self.model(images)
        if not self.nms:
            return preds
        class_scores, labels = preds[..., 5:].max(dim=-1)
        scores = preds[..., 4] * class_scores  # [B, N]
        boxes = cxcywh_to_xyxy(preds[..., :4])
        num_classes = preds.shape[-1] - 5
        # Class-aware NMS with one label per box: each box scores only in its own class's row.
        one_hot = nn.functional.one_hot(labels, num_classes).to(scores.dtype)  # [B, N, C]
        per_class = (one_hot * scores[..., None]).transpose(1, 2).contiguous()  # [B, C, N]
        selected = _NonMaxSuppression.apply(boxes, per_class, self.max_det, self.iou_threshold, self.conf_threshold)
        batch, n = scores.shape
        kept = torch.zeros(batch * n, dtype=scores.dtype)
        kept = kept.index_fill(0, selected[:, 0] * n + selected[:, 2], 1.0).view(batch, n)
        # Kept boxes keep their score; the others drop below any kept one (scores are >= 0).
        ranked = scores * kept - (1.0 - kept)
        k = min(self.max_det, n)
        top_scores, top_index = ranked.topk(k, dim=1)
        valid = top_scores >= 0
        # repeat, not expand(-1, -1, 4): the exporter turns -1 into a literal size there.
        out_boxes = boxes.gather(1, top_index[..., None].repeat(1, 1, 4)) * valid[..., None]
        out_scores = top_scores * valid
        out_labels = torch.where(valid, labels.gather(1, top_index), torch.full_like(top_index, -1))
        return out_boxes, out_scores, out_labels, valid.sum(dim=1)


#: How an INT8 model's ``quantization`` metadata names its weights, by weight bits (7: ONNX
#: Runtime's ``reduce_range``, weights within +-64).
INT8_WEIGHTS = {8: "per-channel weights", 7: "per-channel 7-bit weights (reduce_range)"}


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    imgsz: int | Sequence[int] = 640,
    dynamic_batch: bool = False,
    nms: bool = False,
    opset: int = 17,
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.65,
    max_det: int = 100,
    class_names: Sequence[str] | None = None,
    extra_metadata: Mapping[str, str] | None = None,
) -> Path:
    """Export ``model`` (fused here; pass it unfused or fused) to ``path`` and check it with
    ``onnx.checker``. ``imgsz``: int or (h, w), multiples of 32. The metadata holds the
    preprocessing (``PREPROCESS``), ``imgsz``, ``class_names`` (JSON), ``outputs`` and, with
    ``nms``, the thresholds. Written atomically; returns ``path``."""
    h, w = to_hw(imgsz)
    if h % 32 or w % 32:
        raise ValueError(f"--imgsz: {h}x{w} (h x w); expected multiples of 32")
    if opset < 11:
        raise ValueError(f"--opset: {opset}; expected 11 or newer (NonMaxSuppression needs 11)")
    model = model.cpu().eval()
    if hasattr(model, "fuse"):
        model.fuse()
    wrapped = ExportModel(model, nms, conf_threshold, iou_threshold, max_det).eval()
    example = torch.zeros(1, 3, h, w)
    outputs = ["boxes", "scores", "labels", "num_dets"] if nms else ["preds"]
    dynamic = {name: {0: "batch"} for name in ["images", *outputs]} if dynamic_batch else None
    path = Path(path)
    tmp = path.with_name(f".{path.name}.export")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # shape checks become constants
        # The TorchScript exporter on purpose: it maps an autograd.Function to NonMaxSuppression
        # and takes dynamic_axes; the torch.export one needs neither workaround nor onnxscript.
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
        torch.onnx.export(
            wrapped, (example,), str(tmp), input_names=["images"], output_names=outputs, opset_version=opset,
            dynamic_axes=dynamic, dynamo=False,
        )  # fmt: skip
    try:
        proto = onnx.load(str(tmp))
        metadata = dict(PREPROCESS)
        if any(node.op_type == "QuantizeLinear" for node in proto.graph.node):
            # A fake-quantised (QAT) model: stored as PTQ stores its INT8 graph.
            proto = fold_qdq_constants(proto)
            from detector.compress.qat import weight_bits_of

            weights = INT8_WEIGHTS[weight_bits_of(model)]
            metadata["quantization"] = f"int8 QDQ from quantisation-aware training, {weights}"
        metadata.update(
            imgsz=f"{h},{w}",
            outputs=",".join(outputs),
            class_names=json.dumps(list(class_names) if class_names is not None else None),
            nms=str(nms).lower(),
            dynamic_batch=str(dynamic_batch).lower(),
        )
        if nms:
            metadata.update(conf_threshold=str(conf_threshold), iou_threshold=str(iou_threshold), max_det=str(max_det))
        metadata.update(extra_metadata or {})
        onnx.helper.set_model_props(proto, metadata)
        onnx.checker.check_model(proto)
        data = proto.SerializeToString()
    finally:
        tmp.unlink(missing_ok=True)
    return atomic_write(path, lambda f: f.write(data), binary=True)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata properties of an ONNX file (without loading its weights)."""
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}
