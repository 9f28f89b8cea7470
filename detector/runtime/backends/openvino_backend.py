"""OpenVINO backend: the ONNX file compiled for the CPU, one static-shape compilation per input shape.

Why static shapes: OpenVINO's CPU plugin runs a model with dynamic height/width through shape-agnostic kernels and
re-plans memory on every call; the same model reshaped to the exact input shape (what Ultralytics' own OpenVINO
export does, at one fixed size) is markedly faster (measured by `benchmarks/`: see README, Performance). Our
`Detector` letterboxes to the smallest stride-multiple rectangle, so a service sees a handful of distinct shapes
(one per aspect ratio); each gets its own compiled model, kept in a small LRU cache
(`inference.openvino.shape_cache`), and a shape seen for the first time pays one compilation.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
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


class _Compiled:
    """One compiled model, with one infer request per calling thread (requests are not thread-safe)."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self._local = threading.local()

    def request(self) -> Any:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        return request


class OpenVinoBackend(Backend):
    name: ClassVar[str] = "openvino"
    thread_safe: ClassVar[bool] = True

    def __init__(self, model_path: Path, options: BackendOptions) -> None:
        super().__init__(model_path, options)
        if not model_path.is_file():
            raise ModelLoadError(f"model file not found: {model_path}")
        self.core = ov.Core()
        ovo = options.openvino
        # f32 by default: on CPUs with bf16/AMX OpenVINO would otherwise lower precision on its own, and results
        # would drift from the other backends and from the evaluation. bf16 is an explicit, measured opt-in.
        self.config: dict[str, Any] = {
            "PERFORMANCE_HINT": ovo.hint.upper(),
            "INFERENCE_PRECISION_HINT": ovo.precision,
        }
        if options.threads:
            self.config["INFERENCE_NUM_THREADS"] = options.threads
        if ovo.streams:
            self.config["NUM_STREAMS"] = ovo.streams
        try:
            # `convert_model`, not `Core.read_model`: only the former applies OpenVINO's offline (MOC)
            # transformations, and without them the CPU plugin (2026.4) miscomputes NNCF's Q/DQ INT8 ONNX (class
            # scores off by up to 0.18 against ONNX Runtime, val mAP halved; measured on the quick model). FP32 models
            # are unaffected either way.
            self.model = ov.convert_model(str(model_path))
        except Exception as exc:  # OpenVINO raises RuntimeError with the parser's message
            raise ModelLoadError(f"openvino cannot load {model_path}: {exc}") from exc
        self._input = _spec(self.model.inputs[0])
        self._outputs = [_spec(o) for o in self.model.outputs]
        self.cache_size = ovo.shape_cache if -1 in self._input.shape else 0
        self._cache: OrderedDict[tuple[int, ...], _Compiled] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._dynamic: _Compiled | None = None
        if not self.cache_size:  # a static model, or static reshapes switched off: one compilation as is
            self._dynamic = _Compiled(self._compile(self.model))

    def _compile(self, model: Any) -> Any:
        try:
            return self.core.compile_model(model, "CPU", self.config)
        except Exception as exc:
            raise ModelLoadError(f"openvino cannot compile {self.model_path}: {exc}") from exc

    def compiled_for(self, shape: tuple[int, ...]) -> _Compiled:
        """The compiled model for an input of `shape`: reshaped to it (LRU-cached), or the one dynamic model."""
        if self._dynamic is not None:
            return self._dynamic
        with self._cache_lock:
            entry = self._cache.get(shape)
            if entry is not None:
                self._cache.move_to_end(shape)
                return entry
        # Compile outside the lock (hundreds of ms): other shapes keep running meanwhile. Two threads meeting a new
        # shape at once may both compile it; the second result is dropped, which is rarer and cheaper than a stall.
        model = self.model.clone()
        model.reshape({model.inputs[0]: ov.PartialShape(list(shape))})
        entry = _Compiled(self._compile(model))
        with self._cache_lock:
            entry = self._cache.setdefault(shape, entry)
            self._cache.move_to_end(shape)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)  # requests of an evicted model go with it once no thread uses it
        return entry

    @property
    def cached_shapes(self) -> list[tuple[int, ...]]:
        with self._cache_lock:
            return list(self._cache)

    def run(self, batch: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        request = self.compiled_for(tuple(batch.shape)).request()
        request.infer({0: batch})
        # The output tensor's memory is reused by the next infer on this request: copy it out.
        return np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)
