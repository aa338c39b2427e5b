"""Deployment formats: ONNX export with decoding and optional NMS in the graph."""

from detector.export.onnx import ExportModel, export_onnx, read_metadata

__all__ = ["ExportModel", "export_onnx", "read_metadata"]
