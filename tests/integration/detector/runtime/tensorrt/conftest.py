"""Fixtures for the TensorRT tests on the quick model: the CPU stand-in for TensorRT/pycuda and Q/DQ INT8 ONNX files
(defined in tests/tensorrt_fixtures.py, shared with tests/unit/detector/runtime/tensorrt)."""

from tests.tensorrt_fixtures import qdq_onnx, standin

__all__ = ["qdq_onnx", "standin"]
