"""Deployment formats: ONNX export with decoding and optional NMS in the graph (``onnx``), INT8
post-training quantisation and its per-conv sensitivity report (``quantize``), and the
PyTorch <-> ONNX alignment debugger (``align``)."""

from detector.export.onnx import ExportModel, export_onnx, read_metadata

__all__ = ["ExportModel", "export_onnx", "read_metadata"]
