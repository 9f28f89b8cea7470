"""OpenVINO backend: the ONNX file compiled for the CPU with a latency hint (about 2x ONNX Runtime on x86 CPUs)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from detector.errors import ModelLoadError
from detector.runtime.backends.base import Backend, BackendOptions, TensorSpec

try:
    import openvino as ov
except ImportError as exc:
    raise ImportError("openvino is not installed: install the `openvino` extra (uv sync --extra openvino)") from exc

_OV_DTYPES = {"f32": np.float32, "f16": np.float16}


def _spec(port: Any) -> TensorSpec:
    pshape = port.get_partial_shape()
    shape = tuple(d.get_length() if d.is_static else -1 for d in pshape)
    dtype = _OV_DTYPES.get(port.get_element_type().get_type_name(), np.float32)
    return TensorSpec(port.get_any_name(), shape, np.dtype(dtype))


class OpenVinoBackend(Backend):
    name: ClassVar[str] = "openvino"
    # Infer requests are not thread-safe, so each calling thread gets its own (see `_request`).
    thread_safe: ClassVar[bool] = True

    def __init__(self, model_path: Path, options: BackendOptions) -> None:
        super().__init__(model_path, options)
        if not model_path.is_file():
            raise ModelLoadError(f"model file not found: {model_path}")
        core = ov.Core()
        # Always f32: on CPUs with bf16/AMX OpenVINO would otherwise lower precision on its own, and results would
        # drift from the other backends and from the evaluation. (`options.precision` is the TensorRT engine's.)
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if options.threads:
            config["INFERENCE_NUM_THREADS"] = options.threads
        try:
            model = core.read_model(str(model_path))
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError with the parser's message
            raise ModelLoadError(f"openvino cannot load {model_path}: {exc}") from exc
        self._input = _spec(self.compiled.inputs[0])
        self._outputs = [_spec(o) for o in self.compiled.outputs]
        self._local = threading.local()

    def _request(self) -> Any:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        return request

    def run(self, batch: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        request = self._request()
        request.infer({0: batch})
        # The output tensor's memory is reused by the next infer on this request: copy it out.
        return np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)
