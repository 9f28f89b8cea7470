"""Fixtures for the model-free TensorRT tests: the CPU stand-in for TensorRT/pycuda (defined in
tests/tensorrt_fixtures.py, shared with tests/integration/detector/runtime/tensorrt)."""

from tests.tensorrt_fixtures import standin

__all__ = ["standin"]
