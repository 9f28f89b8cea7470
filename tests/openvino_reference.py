"""The OpenVINO backend's uint8 input against the model as exported: a shared check for the FP32 and INT8 models."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detector.config import OpenVinoConfig
from detector.runtime import BackendOptions, Detector
from detector.runtime.preprocess import PIXEL_SCALE, preprocess_batch


def float_input_outputs(model: Path, pixels: np.ndarray) -> np.ndarray:
    """The model as exported (float32 input), compiled as the backend compiles it, on numpy's [0, 1] pixels."""
    import openvino as ov

    ref = ov.convert_model(str(model))
    ref.reshape({ref.inputs[0]: ov.PartialShape(list(pixels.shape))})
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    request = ov.Core().compile_model(ref, "CPU", config).create_infer_request()
    request.infer({0: pixels.astype(np.float32) * PIXEL_SCALE})
    return np.array(request.get_output_tensor(0).data, copy=True)


def assert_uint8_input_is_exact(model: Path, images: list[np.ndarray]) -> None:
    """The backend takes uint8 pixels and scales them in OpenVINO's graph (cheaper than in numpy): the network must
    see the same float32 values, so its outputs equal, bit for bit, the float-input model's on numpy's scaling."""
    options = BackendOptions(device="cpu", openvino=OpenVinoConfig(hint="latency"))
    with Detector.load(model, "openvino", options=options) as det:
        assert det.backend.input_spec.dtype == np.uint8
        for image in images:
            pixels, _ = preprocess_batch([image], det.batch_shape([image]), np.uint8)
            np.testing.assert_array_equal(det.backend.run(pixels), float_input_outputs(model, pixels))
