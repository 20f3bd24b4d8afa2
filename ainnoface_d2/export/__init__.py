"""Deployment: the exported graph (ONNX, TorchScript), runtimes (ONNX Runtime, OpenVINO) and
reduced precision (bf16, int8, fp16)."""

from .graph import AInnoFaceGraph, export_model, export_onnx, export_torchscript, runtime_metadata

__all__ = [
    "AInnoFaceGraph",
    "export_model",
    "export_onnx",
    "export_torchscript",
    "runtime_metadata",
]
