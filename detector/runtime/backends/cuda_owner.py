"""A thread that owns one CUDA context and runs every piece of work that needs it.

Why: a pycuda context is current on the thread that created (or pushed) it and nowhere else, and a TensorRT
execution context must not be used by two threads at once. Servers call `run` from a thread pool (FastAPI runs plain
`def` endpoints in one), which without this fails with "invalid device context" or races on shared buffers.

How: `CudaOwner` starts one daemon thread that creates the context (`Device(i).make_context()`, which also makes it
current there), then executes submitted callables one at a time from a queue and hands results back through
futures. `call(fn)` may be used from any thread, including the owner itself (then it runs inline, so nested calls
cannot deadlock). `close()` lets queued work finish, then pops and detaches the context on the owner thread. Work is
serialised by construction, so everything touching CUDA or TensorRT state needs no further locks.
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
            raise BackendUnavailableError(f"cannot create a CUDA context on GPU {device_index}: {exc}") from exc

    @property
    def thread_ident(self) -> int | None:
        return self._thread.ident

    def _main(self) -> None:
        try:
            import pycuda.driver as cuda

            cuda.init()
            context = cuda.Device(self.device_index).make_context()
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
                context.detach()
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
