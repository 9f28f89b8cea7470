"""ONNX Runtime backend: CPU everywhere, the CUDA execution provider when installed and a GPU is visible."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from detector.errors import ModelLoadError
from detector.runtime.backends.base import Backend, BackendOptions, TensorSpec

try:
    import onnxruntime as ort
except ImportError as exc:  # pragma: no cover - onnxruntime is a core dependency
    raise ImportError("onnxruntime is not installed (pip install onnxruntime)") from exc

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,  # a model that normalises 0-255 pixels itself (export/uint8_input.py)
}


def _spec(node: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else -1 for d in node.shape)
    return TensorSpec(node.name, shape, np.dtype(_ORT_DTYPES.get(node.type, np.float32)))


class OnnxRuntimeBackend(Backend):
    name: ClassVar[str] = "onnxruntime"
    thread_safe: ClassVar[bool] = True  # InferenceSession.run is documented as thread-safe

    def __init__(self, model_path: Path, options: BackendOptions) -> None:
        super().__init__(model_path, options)
        if not model_path.is_file():
            raise ModelLoadError(f"model file not found: {model_path}")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if options.threads:
            so.intra_op_num_threads = options.threads
        providers = ["CPUExecutionProvider"]
        if options.device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
            device_id = int(options.device.split(":")[1]) if options.device.startswith("cuda:") else 0
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device_id}))  # type: ignore[arg-type]
        try:
            self.session = ort.InferenceSession(str(model_path), sess_options=so, providers=providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf/NoSuchFile types
            raise ModelLoadError(f"onnxruntime cannot load {model_path}: {exc}") from exc
        self._input = _spec(self.session.get_inputs()[0])
        self._outputs = [_spec(o) for o in self.session.get_outputs()]
        self._output_names = [self._outputs[0].name]

    @property
    def device_name(self) -> str:
        return "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"

    def run(self, batch: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        out = self.session.run(self._output_names, {self._input.name: batch})[0]
        return np.asarray(out, dtype=np.float32)
