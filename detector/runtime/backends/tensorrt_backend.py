"""TensorRT backend (TensorRT 10 and 11): a serialized engine run through pycuda buffers on CUDA owner threads.

Model path:
  * `model.onnx`: the engine comes from the cache in `options.engine.engine_dir`, keyed by the ONNX's sha256, GPU,
    TensorRT version and CUDA major, precision (the engine's real one: int8 for a Q/DQ ONNX), batch profile, input
    dtype and builder recipe (`detector.runtime.engines.resolve_engine`); when missing or refused it is built by the
    injected `options.engine_builder` ON THE OWNER THREAD OF THE TARGET GPU (tactics are timed on the GPU that runs
    them), or, with no builder, the backend is unavailable with the command that builds it. When TensorRT itself
    refuses a verified plan (`deserialize_cuda_engine` returns None, e.g. after a driver update) it is rebuilt once.
  * `name.engine`: must lie inside the engine directory (symlinks resolved) and match its sidecar (sha256, TensorRT
    version, GPU). Engines are executable code: nothing else is ever deserialised.

Contexts and threads: every owner thread (`CudaOwner`) has the device's primary CUDA context current, the one
TensorRT's builder and runtime use too. The engine is deserialised on the first owner. Inference runs in `slots`
(`options.threads`, default 2): each slot is an execution context with its own owner thread, stream and buffers, so
while one batch is on the GPU the next is copied in and the previous one post-processed. A slot is used by one
request at a time (a free-slot pool), so no execution context is ever touched by two threads at once, and
`thread_safe` is True.

Per slot, buffers (page-locked host, device) are allocated once for the profile's max batch, tensor addresses are
set once, and `set_input_shape` is called only when the batch shape changes (each call makes TensorRT re-plan).
`lend_input` lends the slot's page-locked input buffer to `Detector`, which letterboxes each image straight into it:
no batch array and no host copy before the upload (`run` callers with their own array pay one copy into it). The
caller's thread fills the buffer and copies the output out, so the owner thread only enqueues the transfers and the
inference and waits for the stream. An engine built with `input_dtype: uint8` takes 0-255 pixels (normalised by
its first layers on the GPU): its page-locked buffer and upload are uint8, a quarter of the float32 bytes.

Failures become the errors `backend=auto` falls back on: no GPU, CUDA init failing inside TensorRT (`TypeError`
from pybind11), GPU memory exhausted (pycuda `MemoryError`, a None execution context) are BackendUnavailableError;
a plan or ONNX that TensorRT refuses is ModelLoadError. Each message carries TensorRT's last logged errors.

A CUDA error AT INFERENCE (pycuda raises `cuda.Error` from a copy or the stream sync, e.g. "an illegal memory
access was encountered"; `execute_async_v3` returns False) marks the whole backend failed (`failure`): that call
and every later one raise `BackendFailedError` (a BackendUnavailableError) with the first reason, without touching
CUDA again. Why the whole backend and not one slot: CUDA's illegal-address-class errors are sticky, the context
is unusable until the process ends, and both slots share the device's primary context. The service turns this
into 503 on /health and a non-zero exit (api/service.py).

Closing: `close()` wakes every caller waiting for a slot (they get BackendUnavailableError), waits up to
`CLOSE_TIMEOUT_S` for leased slots to come back, and then stops every owner thread whether or not they did.

TensorRT and pycuda are imported lazily, never at `import detector.runtime`.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from detector.errors import BackendFailedError, BackendUnavailableError, InvalidInputError, ModelLoadError
from detector.runtime.backends.base import Backend, BackendOptions, InputLease, TensorSpec
from detector.runtime.backends.cuda_owner import CudaOwner
from detector.runtime.backends.tensorrt_logger import describe_errors, error_mark, trt_logger
from detector.runtime.engines import (
    EngineInfo,
    EngineSpec,
    current_target,
    load_verified,
    rebuild_engine,
    require_tensorrt,
    resolve_engine,
)

log = logging.getLogger(__name__)

DEFAULT_SLOTS = 2  # two execution contexts: one batch on the GPU while the next is prepared
# `inference.threads` means intra-op threads to CPU backends; here it is the number of execution contexts, capped:
# beyond a few, contexts only cost GPU memory (a GPU has one or two copy engines and one compute queue to overlap).
MAX_SLOTS = 4
CLOSE_TIMEOUT_S = 60.0  # how long close() waits for in-flight calls to hand their slots back


@dataclass
class _Binding:
    """One IO tensor: its name, element type, max-batch shape and the two buffers reused for every call."""

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]  # at the profile's max batch
    host: Any  # page-locked numpy array of `shape`
    device: Any  # pycuda DeviceAllocation of host.nbytes


@dataclass
class _Slot:
    """One execution context with everything it alone uses."""

    owner: CudaOwner
    context: Any  # tensorrt.IExecutionContext
    stream: Any  # pycuda Stream
    bindings: dict[str, _Binding] = field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None  # the shape last given to set_input_shape
    output_shape: tuple[int, ...] = ()


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
    thread_safe: ClassVar[bool] = True  # each slot is used by one caller at a time, on its own owner thread

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
        import pycuda.driver as cuda

        if model_path.suffix.lower() not in (".onnx", ".engine"):
            raise ModelLoadError(f"TensorRT backend loads .onnx or .engine files, got {model_path}")
        self._closed = False
        self._failure: str | None = None  # why the backend is out of service (set once, by the first CUDA fault)
        self._slots: list[_Slot] = []
        # Free slots, guarded by a condition rather than a queue.Queue: close() must wake the callers waiting here.
        self._free: deque[_Slot] = deque()
        self._cond = threading.Condition()
        self._main = CudaOwner(self._index, name="tensorrt")
        try:
            self._main.call(lambda: self._open(model_path, options.engine))
            for i in range(min(options.threads, MAX_SLOTS) if options.threads > 0 else DEFAULT_SLOTS):
                owner = self._main if i == 0 else CudaOwner(self._index, name=f"tensorrt-slot{i}")
                try:
                    slot = owner.call(partial(self._make_slot, owner))
                except BaseException:
                    if owner is not self._main:
                        owner.close()
                    raise
                self._slots.append(slot)
                self._give_back(slot)  # before the warm-up: close() after a failed warm-up still finds it
                slot.owner.call(partial(self._warmup, slot))
        except (cuda.Error, MemoryError) as exc:  # pycuda's LogicError/MemoryError/...: the GPU, not the model
            self.close()
            raise BackendUnavailableError(f"CUDA failed on GPU {self._index} while loading the engine: {exc}") from exc
        except BaseException:
            self.close()
            raise
        log.info(
            "TensorRT %s engine %s on %s, batch %d..%d, %d execution contexts",
            self.engine_info.precision,
            self.engine_info.path.name,
            self.device_name,
            self._min_batch,
            self._max_batch,
            len(self._slots),
        )

    # --- owner threads only -------------------------------------------------------------------------------------

    def _deserialize(self, data: bytes) -> tuple[Any, str]:
        mark = error_mark()
        engine = self._runtime.deserialize_cuda_engine(data)
        return engine, describe_errors(mark)

    def _open(self, model_path: Path, spec: EngineSpec) -> None:
        """Find, build if needed, verify and deserialise the engine. On the main owner: a build runs here too."""
        import pycuda.driver as cuda
        import tensorrt as trt

        builds: list[EngineInfo] = []
        builder = self.options.engine_builder

        def build(path: Path, spec: EngineSpec, device: int) -> EngineInfo:
            assert builder is not None
            builds.append(builder(path, spec, device))
            return builds[-1]

        if model_path.suffix.lower() == ".onnx":
            info, data = resolve_engine(model_path, spec, self._index, build=build if builder else None)
        else:
            info, data = load_verified(model_path, spec.engine_dir, current_target(self._index))
        try:
            self._runtime = trt.Runtime(trt_logger())
        except TypeError as exc:  # pybind11's "factory function returned nullptr": TensorRT could not init CUDA
            raise BackendUnavailableError(f"TensorRT cannot create a runtime on GPU {self._index} ({exc})") from exc
        engine, why = self._deserialize(data)
        if engine is None and model_path.suffix.lower() == ".onnx" and not builds:
            info, data = rebuild_engine(model_path, spec, self._index, build if builder else None, why.lstrip(": "))
            engine, why = self._deserialize(data)
        if engine is None:
            raise ModelLoadError(f"TensorRT could not deserialize {info.path}{why}")
        self.engine_info = info
        self._engine = engine
        self._gpu_name = str(cuda.Device(self._index).name())

        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or not outputs:
            raise ModelLoadError(f"expected one input and at least one output, engine has {inputs} -> {outputs}")
        self._input_name = inputs[0]
        self._output_names = outputs
        lo, _, hi = (_dims(d) for d in engine.get_tensor_profile_shape(self._input_name, 0))
        self._min_batch, self._max_batch = int(lo[0]), int(hi[0])
        self._sample_shape = hi[1:]  # (C, H, W) at most; buffers are sized for it
        self._min_sample = lo[1:]  # smaller H, W when the profile is rectangular (an ONNX with dynamic H, W)
        if lo[1] != hi[1]:
            raise ModelLoadError(f"engine profile must fix the channels; it spans {lo} .. {hi}")
        # Our own table rather than `trt.nptype`: that helper is untyped, and these are the types YOLO engines use.
        numpy_types = {
            trt.DataType.FLOAT: np.float32,
            trt.DataType.HALF: np.float16,
            trt.DataType.INT32: np.int32,
            trt.DataType.INT64: np.int64,
            trt.DataType.BOOL: np.bool_,
            trt.DataType.UINT8: np.uint8,
        }
        self._dtypes: dict[str, np.dtype[Any]] = {}
        for name in names:
            trt_dtype = engine.get_tensor_dtype(name)
            if trt_dtype not in numpy_types:
                raise ModelLoadError(f"tensor {name} has type {trt_dtype}, which this backend does not handle")
            self._dtypes[name] = np.dtype(numpy_types[trt_dtype])

    def _make_slot(self, owner: CudaOwner) -> _Slot:
        """An execution context, stream and buffers, created on `owner` (primary context current there)."""
        import pycuda.driver as cuda

        mark = error_mark()
        context = self._engine.create_execution_context()
        if context is None:  # TensorRT could not allocate the context's activation memory
            raise BackendUnavailableError(
                f"TensorRT could not create an execution context on GPU {self._index}{describe_errors(mark)}"
            )
        slot = _Slot(owner, context, cuda.Stream())
        try:
            # Shapes at max batch: set the input, then TensorRT computes every output's shape.
            max_shape = (self._max_batch, *self._sample_shape)
            if not context.set_input_shape(self._input_name, max_shape):
                raise ModelLoadError(f"engine refuses its own max input shape {max_shape}{describe_errors(mark)}")
            slot.input_shape = max_shape
            for name in [self._input_name, *self._output_names]:
                shape = _dims(context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise ModelLoadError(f"tensor {name} has an unresolved shape {shape} at max batch")
                host = cuda.pagelocked_empty(shape, self._dtypes[name])
                binding = _Binding(name, self._dtypes[name], shape, host, cuda.mem_alloc(host.nbytes))
                slot.bindings[name] = binding
                if not context.set_tensor_address(name, int(binding.device)):  # once: the buffers never move
                    raise ModelLoadError(f"TensorRT refused the address of tensor {name}")
            slot.output_shape = _dims(context.get_tensor_shape(self._output_names[0]))
        except BaseException:  # free what this slot already allocated
            self._release_slot(slot)
            raise
        if not self._slots:  # the first slot's view is the backend's public spec
            c, h, w = self._sample_shape
            hw = (h, w) if self._min_sample == self._sample_shape else (-1, -1)  # -1, -1: Detector letterboxes rect
            self._input = TensorSpec(self._input_name, (-1, c, *hw), self._dtypes[self._input_name])
            self._outputs = [
                TensorSpec(n, (-1, *slot.bindings[n].shape[1:]), self._dtypes[n]) for n in self._output_names
            ]
        return slot

    def _warmup(self, slot: _Slot) -> None:
        shape = (self._min_batch, *self._sample_shape)
        self._host_input(slot, shape)[...] = 0
        self._enqueue(slot, shape)

    def _host_input(self, slot: _Slot, shape: tuple[int, ...]) -> npt.NDArray[Any]:
        """The contiguous front of the slot's page-locked input buffer, viewed as `shape` (what gets uploaded)."""
        host: npt.NDArray[Any] = slot.bindings[self._input_name].host
        return host.reshape(-1)[: int(np.prod(shape))].reshape(shape)

    def _enqueue(self, slot: _Slot, shape: tuple[int, ...]) -> npt.NDArray[Any]:
        """Upload the slot's host input as `shape`, run, download; returns a view of the host output."""
        import pycuda.driver as cuda

        n = shape[0]
        if not self._min_batch <= n <= self._max_batch:  # callers split and pad; this guards the invariant
            raise InvalidInputError(f"batch {n} outside the engine profile {self._min_batch}..{self._max_batch}")
        context = slot.context
        if shape != slot.input_shape:  # re-planning costs: only when the batch size changes
            mark = error_mark()
            if not context.set_input_shape(self._input_name, shape):
                raise InvalidInputError(f"input shape {shape} is outside the engine's profile{describe_errors(mark)}")
            slot.input_shape = shape
            slot.output_shape = _dims(context.get_tensor_shape(self._output_names[0]))
        src = slot.bindings[self._input_name]
        out = slot.bindings[self._output_names[0]]
        host: npt.NDArray[Any] = out.host
        view = host.reshape(-1)[: int(np.prod(slot.output_shape))].reshape(slot.output_shape)
        try:
            cuda.memcpy_htod_async(src.device, self._host_input(slot, shape), slot.stream)
            mark = error_mark()
            if not context.execute_async_v3(slot.stream.handle):
                # The enqueue failed (TensorRT logged why); what was already queued on the stream is drained so
                # the buffers are not in use when the slot is released.
                why = f"TensorRT execute_async_v3 returned False{describe_errors(mark)}"
                slot.stream.synchronize()
                raise self._fail(why)
            cuda.memcpy_dtoh_async(view, out.device, slot.stream)
            # Asynchronous kernel faults (illegal address, launch failure) surface here, at the first sync.
            slot.stream.synchronize()
        except cuda.Error as exc:  # pycuda's LogicError/LaunchError/...: the GPU failed, not the input
            raise self._fail(f"CUDA error on GPU {self._index} during inference: {type(exc).__name__}: {exc}") from exc
        return view

    def _fail(self, reason: str) -> BackendFailedError:
        """Mark the backend out of service (the first reason wins) and return the error to raise."""
        with self._cond:
            if self._failure is None:
                self._failure = reason
                log.critical("TensorRT backend on %s failed and is out of service: %s", self.device_name, reason)
            self._cond.notify_all()  # callers waiting for a slot raise now rather than after the next release
        return BackendFailedError(f"the TensorRT backend failed and is out of service: {self._failure}")

    def _release_slot(self, slot: _Slot) -> None:
        try:
            for b in slot.bindings.values():
                b.device.free()
        except Exception as exc:  # after a sticky CUDA fault frees fail too; the driver frees with the process
            log.warning("freeing the buffers of a TensorRT slot failed: %s", exc)
        slot.bindings.clear()
        slot.context = slot.stream = None  # TensorRT objects die on their owner, before the engine

    def _release_engine(self) -> None:
        for attr in ("_engine", "_runtime"):  # engine before runtime, on the thread with the context current
            if hasattr(self, attr):
                delattr(self, attr)

    # --- any thread --------------------------------------------------------------------------------------------------

    @property
    def max_batch(self) -> int | None:
        return self._max_batch

    @property
    def precision(self) -> str | None:
        """What the engine really computes in (from its sidecar: fp32 with TF32 off, fp16, or int8 for Q/DQ)."""
        return self.engine_info.precision

    @property
    def slots(self) -> int:
        return len(self._slots)

    @property
    def failure(self) -> str | None:
        return self._failure

    @property
    def device_name(self) -> str:
        return f"cuda:{self._index} ({getattr(self, '_gpu_name', '?')})"

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if self._failure is not None:
            raise BackendFailedError(f"the TensorRT backend failed and is out of service: {self._failure}")
        if self._closed:
            raise BackendUnavailableError("the TensorRT backend is closed")
        lo, hi = self._min_sample, self._sample_shape
        if len(shape) != 4 or not all(a <= d <= b for a, d, b in zip(lo, shape[1:], hi, strict=True)):
            want = ", ".join(str(b) if a == b else f"{a}..{b}" for a, b in zip(lo, hi, strict=True))
            raise InvalidInputError(f"expected a (B, {want}) batch, got {shape}")
        if shape[0] == 0:
            raise InvalidInputError("empty batch")

    def lend_input(self, shape: tuple[int, ...]) -> AbstractContextManager[InputLease]:
        """A free slot's page-locked input buffer itself, as a `shape` array: the caller letterboxes into it (no batch
        array in between, no second host copy), `run()` uploads it, runs and downloads on the slot's owner thread.
        The slot is this caller's from here until the block exits, so nobody else writes that buffer meanwhile."""
        return self._lease(shape)

    @contextmanager
    def _lease(self, shape: tuple[int, ...]) -> Iterator[InputLease]:
        self._check_shape(shape)
        n = shape[0]
        if n > self._max_batch:
            raise InvalidInputError(f"batch {n} is above the engine's max batch {self._max_batch}; split it")
        padded = (max(n, self._min_batch), *shape[1:])  # profiles starting above 1: zero-pad, drop the padding
        slot = self._take()
        try:
            host = self._host_input(slot, padded)
            if padded[0] > n:
                host[n:] = 0
            held = [True]

            def run() -> npt.NDArray[np.float32]:
                if not held[0]:
                    raise RuntimeError("InputLease.run() after its `with` block: the slot belongs to another call")
                view = slot.owner.call(lambda: self._enqueue(slot, padded))
                return np.array(view[:n], dtype=np.float32)  # a copy: the slot's buffer is reused by the next call

            lease = InputLease(host[:n], run)
            try:
                yield lease
            finally:
                held[0] = False
                lease.array.flags.writeable = False  # the caller's view can no longer write the slot's buffer
        finally:
            self._give_back(slot)

    def _take(self) -> _Slot:
        """A free slot; waits while all are leased. Raises once the backend is closed or failed, also for callers
        that were already waiting (close() and _fail() wake them)."""
        with self._cond:
            self._cond.wait_for(lambda: self._free or self._closed or self._failure is not None)
            if self._failure is not None:
                raise BackendFailedError(f"the TensorRT backend failed and is out of service: {self._failure}")
            if self._closed:
                raise BackendUnavailableError("the TensorRT backend was closed while this call waited for a slot")
            return self._free.popleft()

    def _give_back(self, slot: _Slot) -> None:
        with self._cond:
            self._free.append(slot)
            self._cond.notify_all()

    def run(self, batch: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """`lend_input` for callers that bring their own array: the one host copy is theirs into the slot's buffer."""
        self._check_shape(batch.shape)
        if self._dtypes[self._input_name] == np.uint8 and batch.dtype != np.uint8:
            raise InvalidInputError(
                f"this engine takes uint8 pixels 0-255 (built with input_dtype uint8), got a {batch.dtype} batch"
            )
        n = batch.shape[0]
        if n > self._max_batch:  # Detector already splits at max_batch; direct callers get the same behaviour
            parts = [self.run(batch[i : i + self._max_batch]) for i in range(0, n, self._max_batch)]
            return np.concatenate(parts)
        with self._lease(batch.shape) as lease:
            lease.array[...] = batch  # copy (and dtype cast), on the caller's thread, into page-locked memory
            return lease.run()

    def close(self) -> None:
        """Release everything; idempotent. Waiting callers wake with BackendUnavailableError; in-flight calls get
        up to CLOSE_TIMEOUT_S to hand their slots back; every owner thread is stopped either way."""
        main: CudaOwner | None = getattr(self, "_main", None)
        with self._cond:
            if main is None or self._closed:
                return
            self._closed = True
            self._cond.notify_all()  # callers blocked in _take() raise instead of waiting forever
            returned = self._cond.wait_for(lambda: len(self._free) == len(self._slots), CLOSE_TIMEOUT_S)
            free = list(self._free)
            self._free.clear()
        if not returned:
            log.warning(
                "closing the TensorRT backend: %d of %d slots still in use after %.0f s; stopping their threads anyway",
                len(self._slots) - len(free),
                len(self._slots),
                CLOSE_TIMEOUT_S,
            )
        try:
            for slot in self._slots:
                try:
                    # A slot still leased keeps its buffers (its caller may still copy from them); closing its owner
                    # below makes that caller's next CUDA call fail cleanly instead.
                    if any(slot is f for f in free):
                        slot.owner.call(partial(self._release_slot, slot))
                except Exception as exc:  # a closed or failed owner: the driver frees with the context
                    log.warning("releasing a TensorRT slot failed: %s", exc)
                finally:
                    if slot.owner is not main:
                        slot.owner.close()
            main.call(self._release_engine)
        finally:
            main.close()
