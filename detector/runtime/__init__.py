"""Inference runtime: no torch or ultralytics here (the serving image has neither)."""

from detector.runtime.backends.base import Backend, BackendOptions, TensorSpec
from detector.runtime.detections import Detections
from detector.runtime.detector import Detector, Timings
from detector.runtime.metadata import ModelMetadata, read_onnx_metadata

__all__ = [
    "Backend",
    "BackendOptions",
    "Detections",
    "Detector",
    "ModelMetadata",
    "TensorSpec",
    "Timings",
    "read_onnx_metadata",
]
