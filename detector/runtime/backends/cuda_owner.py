"""A thread on which GPU `i`'s primary CUDA context is current, running every piece of work that needs it.

Why: a CUDA context is current only on the threads that pushed it, and a TensorRT execution context must not be
used by two threads at once. Servers call `run` from a thread pool (FastAPI runs plain `def` endpoints in one), which
without this fails with "invalid device context" or races on shared buffers.

Which context: the device's PRIMARY context (`Device(i).retain_primary_context()`, then `push()`), the one the CUDA
runtime API, and therefore TensorRT's builder and runtime, use on that device. A `make_context()` context per backend
would put two contexts on the GPU during a hot reload (memory for both) and share nothing with TensorRT's own
allocations. Several owners of one device (one per execution slot) share the primary context, so memory allocated
on one owner is valid on the others. `close()` pops it on the owner thread and `detach()`es, releasing this owner's
reference; the driver frees the primary context with its last reference.

How: one daemon thread executes submitted callables one at a time from a queue and hands results back through
futures. `call(fn)` may be used from any thread, including the owner itself (then it runs inline, so nested calls
cannot deadlock). `close()` lets queued work finish, then tears down on the owner thread. Work on one owner is
serialised by construction, so state touched only there needs no further locks.

The CUDA binding (pycuda) is used only here and in the TensorRT backend, so moving to NVIDIA's `cuda-bindings` is
a change of these two files: the helpers below are what the engine cache (`engines.current_target`) and the engine
builder (`export.tensorrt`) need from CUDA.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from detector.errors import BackendUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")


def device_properties(device_index: int) -> tuple[str, tuple[int, int]]:
    """Name and compute capability of GPU `device_index` (no context is created); BackendUnavailableError when
    there is no usable driver or no such GPU."""
    try:
        import pycuda.driver as cuda

        cuda.init()
        count = int(cuda.Device.count())
    except Exception as exc:  # ImportError without a driver, pycuda.driver.Error: no driver, no device
        raise BackendUnavailableError(f"no usable NVIDIA GPU ({exc})") from exc
    if not 0 <= device_index < count:
        raise BackendUnavailableError(f"GPU {device_index} requested, {count} visible")
    device = cuda.Device(device_index)
    major, minor = device.compute_capability()
    return str(device.name()), (int(major), int(minor))


def context_is_current(device_index: int) -> bool:
    """Whether a context of GPU `device_index` is current on this thread (pycuda Devices compare by device)."""
    import pycuda.driver as cuda

    try:
        cuda.init()
        return cuda.Context.get_current() is not None and cuda.Context.get_device() == cuda.Device(device_index)
    except cuda.Error:
        return False


def cuda_errors() -> tuple[type[BaseException], ...]:
    """What a failing CUDA call raises: pycuda's Error tree (its own MemoryError, a full GPU, included) and Python's
    MemoryError (host memory, e.g. page-locked buffers)."""
    import pycuda.driver as cuda

    return (cuda.Error, MemoryError)


_Job = tuple[Callable[[], Any], "Future[Any]"]


class CudaOwner:
    """Owner thread of the CUDA context of GPU `device_index`; see the module docstring."""

    def __init__(self, device_index: int = 0, name: str = "cuda-owner") -> None:
        self.device_index = device_index
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._ready: Future[None] = Future()
        self._closed = False
        self._close_lock = threading.Lock()
        self._thread = threading.Thread(target=self._main, name=f"{name}-{device_index}", daemon=True)
        self._thread.start()
        try:
            self._ready.result()
        except Exception as exc:
            self._thread.join()
            raise BackendUnavailableError(f"cannot use the CUDA context of GPU {device_index}: {exc}") from exc

    @property
    def thread_ident(self) -> int | None:
        return self._thread.ident

    def _main(self) -> None:
        try:
            import pycuda.driver as cuda

            cuda.init()
            context = cuda.Device(self.device_index).retain_primary_context()
            context.push()
        except BaseException as exc:  # report any failure to the constructor instead of dying silently
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        try:
            while (job := self._jobs.get()) is not None:
                fn, future = job
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(fn())
                except BaseException as exc:  # delivered to the caller, who re-raises it
                    future.set_exception(exc)
        finally:
            try:
                context.pop()
                context.detach()  # releases this owner's reference to the primary context
            except Exception as exc:  # teardown at exit must not raise; the driver frees the context with the process
                log.warning("CUDA context teardown on GPU %d failed: %s", self.device_index, exc)

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Queue `fn` for the owner thread; the future holds its result or exception."""
        future: Future[T] = Future()
        with self._close_lock:  # no job may slip in after the stop sentinel
            if self._closed:
                raise BackendUnavailableError("the CUDA owner thread is closed (the backend was closed)")
            self._jobs.put((fn, future))
        return future

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the owner thread and return its result (re-raising its exception), from any thread."""
        if threading.get_ident() == self._thread.ident:
            return fn()
        return self.submit(fn).result()

    def close(self, timeout: float = 30.0) -> None:
        """Finish queued work, then tear the context down on its own thread. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._jobs.put(None)
        if threading.get_ident() != self._thread.ident:
            self._thread.join(timeout)
