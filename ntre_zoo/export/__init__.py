"""The export wing: the model as graphs for other runtimes (:func:`export_onnx`: ONNX, run with onnxruntime).

It comes after the zoo (a model to export may be named as ``from_pretrained`` takes it) and before the cli.
"""

from .onnx import OnnxExport, export_onnx

__all__ = ["OnnxExport", "export_onnx"]
