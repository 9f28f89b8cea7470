"""TensorRT backend (TensorRT 10 and 11): a serialized engine run through pycuda buffers on an owner thread.

Model path:
  * `model.onnx`: the engine comes from the cache in `options.engine.engine_dir`, keyed by the ONNX's sha256, GPU,
    TensorRT version, precision and batch profile (`detector.runtime.engines.resolve_engine`); when missing or
    refused (corrupt, modified, other TensorRT or GPU) it is built by the injected `options.engine_builder`, or, with
    none, the backend is unavailable with the command that builds it.
  * `name.engine`: must lie inside the engine directory (symlinks resolved) and match its sidecar (sha256, TensorRT
    version, GPU). Engines are executable code: nothing else is ever deserialised.

Threading: one `CudaOwner` thread per backend owns the pycuda context; deserialisation, buffer allocation,
inference and teardown all run there, so `run` may be called from any thread (see cuda_owner.py) and the TensorRT
execution context is never used by two threads at once. `thread_safe` is therefore True: the owner's queue is the
serialisation point.

Buffers: page-locked host buffers and device buffers are allocated once, for the profile's max batch, and reused.
Batches above the profile's max are split (`max_batch` reports the limit so `Detector` splits first; `run` splits
too); batches below its min are zero-padded. A warm-up inference runs at load so the first request is not slow.

TensorRT and pycuda are imported lazily, never at `import detector.runtime`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from detector.errors import BackendUnavailableError, InvalidInputError, ModelLoadError
from detector.runtime.backends.base import Backend, BackendOptions, TensorSpec
from detector.runtime.backends.cuda_owner import CudaOwner
from detector.runtime.engines import current_target, load_verified, require_tensorrt, resolve_engine

log = logging.getLogger(__name__)


@dataclass
class _Binding:
    """One IO tensor: its name, element type, max-batch shape and the two buffers reused for every call."""

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]  # at the profile's max batch
    host: Any  # page-locked numpy array of `shape`
    device: Any  # pycuda DeviceAllocation of host.nbytes


def _dims(dims: Any) -> tuple[int, ...]:
    """A `tensorrt.Dims` as a tuple. Dims index like a tuple but (in the stubs) declare no `__iter__`: use indices."""
    return tuple(int(dims[i]) for i in range(len(dims)))


def _device_index(device: str) -> int:
    if device in ("auto", "cuda", "gpu"):
        return 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    raise BackendUnavailableError(f"TensorRT runs on NVIDIA GPUs only; device {device!r} is not one (use cuda:N)")


class TensorRTBackend(Backend):
    name: ClassVar[str] = "tensorrt"
    thread_safe: ClassVar[bool] = True  # every call is funnelled through the single CUDA owner thread

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        try:
            import tensorrt  # noqa: F401
        except Exception as exc:  # ImportError, or OSError when libnvinfer cannot load
            return False, f"tensorrt cannot be imported ({exc})"
        try:
            import pycuda.driver as cuda
        except Exception as exc:  # pycuda fails at import without a CUDA driver
            return False, f"pycuda cannot be imported ({exc})"
        try:
            cuda.init()
            count = int(cuda.Device.count())
        except Exception as exc:  # pycuda.driver.Error
            return False, f"no usable NVIDIA GPU ({exc})"
        if count == 0:
            return False, "no NVIDIA GPU is visible"
        return True, ""

    def __init__(self, model_path: Path, options: BackendOptions) -> None:
        super().__init__(model_path, options)
        self._index = _device_index(options.device)
        require_tensorrt()
        suffix = model_path.suffix.lower()
        if suffix == ".onnx":
            self.engine_info, engine_bytes = resolve_engine(
                model_path, options.engine, self._index, build=options.engine_builder
            )
        elif suffix == ".engine":
            target = current_target(self._index)
            self.engine_info, engine_bytes = load_verified(model_path, options.engine.engine_dir, target)
        else:
            raise ModelLoadError(f"TensorRT backend loads .onnx or .engine files, got {model_path}")
        self._owner = CudaOwner(self._index, name="tensorrt")
        self._closed = False
        try:
            self._owner.call(lambda: self._load(engine_bytes))
            self._owner.call(self._warmup)
        except BaseException:
            self.close()
            raise
        log.info(
            "TensorRT %s engine %s on %s, batch %d..%d",
            self.engine_info.precision,
            self.engine_info.path.name,
            self.device_name,
            self._min_batch,
            self._max_batch,
        )

    # --- owner-thread only ----------------------------------------------------------------------------------------

    def _load(self, engine_bytes: bytes) -> None:
        import pycuda.driver as cuda
        import tensorrt as trt

        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if self._engine is None:
            raise ModelLoadError(f"TensorRT could not deserialize {self.engine_info.path} (see the TensorRT log)")
        self._context = self._engine.create_execution_context()
        self._stream = cuda.Stream()
        self._gpu_name = str(cuda.Device(self._index).name())

        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or not outputs:
            raise ModelLoadError(f"expected one input and at least one output, engine has {inputs} -> {outputs}")
        self._input_name = inputs[0]
        lo, _, hi = (_dims(d) for d in self._engine.get_tensor_profile_shape(self._input_name, 0))
        self._min_batch, self._max_batch = int(lo[0]), int(hi[0])
        self._sample_shape = hi[1:]  # (C, H, W), fixed by the profile
        if lo[1:] != self._sample_shape:
            raise ModelLoadError(f"engine profile must fix C, H, W; it spans {lo} .. {hi}")

        # Shapes at max batch: set the input, then TensorRT computes every output's shape.
        if not self._context.set_input_shape(self._input_name, (self._max_batch, *self._sample_shape)):
            raise ModelLoadError(f"engine refuses its own max input shape {(self._max_batch, *self._sample_shape)}")
        # Our own table rather than `trt.nptype`: that helper is untyped, and these are the types YOLO engines use.
        numpy_types = {
            trt.DataType.FLOAT: np.float32,
            trt.DataType.HALF: np.float16,
            trt.DataType.INT32: np.int32,
            trt.DataType.INT64: np.int64,
            trt.DataType.BOOL: np.bool_,
            trt.DataType.UINT8: np.uint8,
        }
        self._bindings: dict[str, _Binding] = {}
        for name in [self._input_name, *outputs]:
            trt_dtype = self._engine.get_tensor_dtype(name)
            if trt_dtype not in numpy_types:
                raise ModelLoadError(f"tensor {name} has type {trt_dtype}, which this backend does not handle")
            dtype = np.dtype(numpy_types[trt_dtype])
            shape = _dims(self._context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise ModelLoadError(f"tensor {name} has an unresolved shape {shape} at max batch")
            host = cuda.pagelocked_empty(shape, dtype)
            self._bindings[name] = _Binding(name, dtype, shape, host, cuda.mem_alloc(host.nbytes))
        self._output_names = outputs
        self._input = TensorSpec(self._input_name, (-1, *self._sample_shape), self._bindings[self._input_name].dtype)
        self._outputs = [TensorSpec(n, (-1, *self._bindings[n].shape[1:]), self._bindings[n].dtype) for n in outputs]

    def _warmup(self) -> None:
        self._infer(np.zeros((self._min_batch, *self._sample_shape), self._input.dtype))

    def _infer(self, batch: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        import pycuda.driver as cuda

        n = batch.shape[0]
        if not self._min_batch <= n <= self._max_batch:  # callers split and pad; this guards the invariant
            raise InvalidInputError(f"batch {n} outside the engine profile {self._min_batch}..{self._max_batch}")
        if not self._context.set_input_shape(self._input_name, batch.shape):
            raise InvalidInputError(f"input shape {batch.shape} is outside the engine's optimisation profile")
        src = self._bindings[self._input_name]
        src.host[:n] = batch
        cuda.memcpy_htod_async(src.device, src.host[:n], self._stream)
        for b in self._bindings.values():
            self._context.set_tensor_address(b.name, int(b.device))
        if not self._context.execute_async_v3(self._stream.handle):
            raise ModelLoadError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        out = self._bindings[self._output_names[0]]
        shape = _dims(self._context.get_tensor_shape(out.name))
        view = out.host.reshape(-1)[: int(np.prod(shape))].reshape(shape)
        cuda.memcpy_dtoh_async(view, out.device, self._stream)
        self._stream.synchronize()
        return np.array(view, dtype=np.float32)  # a copy: the host buffer is reused by the next call

    def _release(self) -> None:
        for b in getattr(self, "_bindings", {}).values():
            b.device.free()
        # TensorRT objects must die before the context they were created in, and on its thread.
        for attr in ("_bindings", "_context", "_engine", "_runtime", "_stream"):
            if hasattr(self, attr):
                delattr(self, attr)

    # --- any thread --------------------------------------------------------------------------------------------------

    @property
    def max_batch(self) -> int | None:
        return self._max_batch

    @property
    def device_name(self) -> str:
        return f"cuda:{self._index} ({getattr(self, '_gpu_name', '?')})"

    def run(self, batch: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        if self._closed:
            raise BackendUnavailableError("the TensorRT backend is closed")
        if batch.ndim != 4 or tuple(batch.shape[1:]) != self._sample_shape:
            raise InvalidInputError(
                f"expected a (B, {', '.join(map(str, self._sample_shape))}) batch, got {batch.shape}"
            )
        batch = np.ascontiguousarray(batch, dtype=self._input.dtype)
        n = batch.shape[0]
        if n == 0:
            raise InvalidInputError("empty batch")
        if n > self._max_batch:  # Detector already splits at max_batch; direct callers get the same behaviour
            parts = [self.run(batch[i : i + self._max_batch]) for i in range(0, n, self._max_batch)]
            return np.concatenate(parts)
        if n < self._min_batch:  # profiles starting above 1: pad with zeros, drop the padding's outputs
            padded = np.zeros((self._min_batch, *self._sample_shape), batch.dtype)
            padded[:n] = batch
            return self._owner.call(lambda: self._infer(padded))[:n]
        return self._owner.call(lambda: self._infer(batch))

    def close(self) -> None:
        owner: CudaOwner | None = getattr(self, "_owner", None)
        if owner is None or self._closed:
            return
        self._closed = True
        try:
            owner.call(self._release)
        finally:
            owner.close()
