"""STAND-IN for `pycuda.driver` (see the package docstring): host memory posing as device memory, with CUDA's
context rules enforced.

Modelled after the real driver (pycuda `src/wrapper/wrap_cudadrv.cpp`, CUDA's context-management docs):
  * every thread has its own context stack; context-bound calls need a current context on the calling thread;
  * `Device.retain_primary_context()` returns THE primary context of that device (the one the CUDA runtime, and so
    TensorRT's builder, uses); it may be current on several threads at once and is reference counted (`detach`
    releases one reference). `make_context()` creates a separate, non-primary context: counted in `stats` so tests
    can prove the backend never makes one;
  * memory belongs to the context it was allocated in; using it while another context is current fails;
  * `faults` makes the next allocation raise `MemoryError` (pycuda's, a subclass of `Error`) like a full GPU, and
    `faults["stream_synchronize"]` makes the next stream sync raise `LaunchError` ("an illegal memory access was
    encountered"), as an asynchronous kernel fault surfaces in real CUDA. Like the real one it is STICKY: from then
    on every context-bound call in the process fails the same way (CUDA: "the process must be terminated");
  * page-locked host buffers are remembered (`is_pinned`), and every host->device copy is recorded in `stats`
    (bytes, dtype, and whether the source was page-locked: from pageable memory a real "async" copy is staged and
    synchronous), so tests can see which memory a batch is uploaded from and how many bytes go over the bus.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

_DEFAULT_DEVICES = [("Stand-in GPU (ONNX Runtime on CPU)", (8, 9))]


class Error(Exception):
    pass


class LogicError(Error):
    pass


class MemoryError(Error):  # pycuda's own name: pycuda.driver.MemoryError derives from Error
    pass


class LaunchError(Error):  # pycuda.driver.LaunchError: what a failed kernel reports at the next sync
    pass


ILLEGAL_ADDRESS = "cuStreamSynchronize failed: an illegal memory access was encountered"


class _State:
    def __init__(self, devices: list[tuple[str, tuple[int, int]]]) -> None:
        self.devices = devices
        self.lock = threading.Lock()
        self.memory: dict[int, npt.NDArray[np.uint8]] = {}  # device pointer -> bytes
        self.owner_ctx: dict[int, Context] = {}  # device pointer -> context it was allocated in
        self.live_contexts: set[int] = set()
        self.primary: dict[int, Context] = {}  # device ordinal -> its primary context (once retained)
        self.ids = itertools.count(0x10000, 0x10000)
        self.pinned: list[npt.NDArray[Any]] = []  # every page-locked buffer handed out
        self.sticky: str | None = None  # a sticky error: every later context-bound call fails with it


_state = _State(list(_DEFAULT_DEVICES))
_tls = threading.local()
# Counters tests assert on; `faults` injects failures the way a real GPU produces them.
stats: dict[str, Any] = {}
faults: dict[str, int] = {}


def reset(devices: list[tuple[str, tuple[int, int]]] | None = None) -> None:
    global _state
    _state = _State(list(_DEFAULT_DEVICES if devices is None else devices))
    stats.clear()
    stats.update(made_contexts=0, primary_retains=0, htod=[], htod_pageable=0)
    faults.clear()


reset()


def live_contexts() -> int:
    """Contexts not yet released: non-primary ones until detached, primary ones while any reference is held."""
    return len(_state.live_contexts)


def live_allocations() -> int:
    return len(_state.memory)


def _stack() -> list[Context]:
    if not hasattr(_tls, "stack"):
        _tls.stack = []
    stack: list[Context] = _tls.stack
    return stack


def current_context(what: str) -> Context:
    """The calling thread's current context, or the error real CUDA gives."""
    stack = _stack()
    if not stack:
        raise LogicError(f"{what} failed: invalid device context (no context is current on this thread)")
    if _state.sticky is not None:
        raise LaunchError(f"{what} failed: {_state.sticky} (sticky: the context is unusable until the process ends)")
    return stack[-1]


def current_or_none() -> Context | None:
    stack = _stack()
    return stack[-1] if stack else None


def primary_context(number: int) -> Context:
    """What the CUDA runtime API uses on a thread with no current context: the primary context of `number`,
    created on first use (cudaSetDevice defaults to device 0)."""
    if number not in _state.primary:
        _state.primary[number] = Context(Device(number), primary=True)
    return _state.primary[number]


def init(flags: int = 0) -> None:
    if not _state.devices:
        raise Error("cuInit failed: no CUDA-capable device is detected")


def get_driver_version() -> int:
    return 13000


class Context:
    def __init__(self, device: Device, primary: bool = False) -> None:
        self.device = device
        self.primary = primary
        self.refs = 0
        self.id = next(_state.ids)
        _state.live_contexts.add(self.id)

    def pop(self) -> None:
        stack = _stack()
        if not stack or stack[-1] is not self:
            raise LogicError("cuCtxPopCurrent failed: context is not current on this thread")
        stack.pop()

    def push(self) -> None:
        if self.id not in _state.live_contexts:
            raise LogicError("cuCtxPushCurrent failed: invalid context (it was released)")
        _stack().append(self)

    def detach(self) -> None:
        if self.primary:
            self.refs -= 1
            if self.refs > 0:
                return
            _state.primary.pop(self.device.number, None)
        _state.live_contexts.discard(self.id)

    @property
    def handle(self) -> int:
        return self.id

    @staticmethod
    def synchronize() -> None:  # pycuda: a static method, synchronising the current context
        current_context("cuCtxSynchronize")

    @staticmethod
    def get_device() -> Device:
        return current_context("cuCtxGetDevice").device

    @staticmethod
    def get_current() -> Context | None:
        return current_or_none()


class Device:
    def __init__(self, number: int) -> None:
        if not 0 <= number < len(_state.devices):
            raise LogicError(f"cuDeviceGet failed: invalid device ordinal {number}")
        self.number = number

    def __eq__(self, other: object) -> bool:  # pycuda: Devices compare equal when they are the same GPU
        return isinstance(other, Device) and other.number == self.number

    def __hash__(self) -> int:
        return self.number

    @staticmethod
    def count() -> int:
        return len(_state.devices)

    def name(self) -> str:
        return _state.devices[self.number][0]

    def compute_capability(self) -> tuple[int, int]:
        return _state.devices[self.number][1]

    def make_context(self, flags: int = 0) -> Context:
        stats["made_contexts"] += 1
        ctx = Context(self)
        ctx.push()
        return ctx

    def retain_primary_context(self) -> Context:
        stats["primary_retains"] += 1
        ctx = primary_context(self.number)
        ctx.refs += 1
        return ctx  # not pushed: the caller pushes it (pycuda.autoprimaryctx does the same)


class Stream:
    def __init__(self, flags: int = 0) -> None:
        self.context = current_context("cuStreamCreate")
        self.handle = next(_state.ids)

    def synchronize(self) -> None:
        _check_same(self.context, "cuStreamSynchronize")
        if faults.get("stream_synchronize", 0) > 0:
            faults["stream_synchronize"] -= 1
            _state.sticky = "an illegal memory access was encountered"
            raise LaunchError(ILLEGAL_ADDRESS)


class DeviceAllocation:
    def __init__(self, ptr: int, nbytes: int) -> None:
        self.ptr, self.nbytes = ptr, nbytes

    def __int__(self) -> int:
        return self.ptr

    def free(self) -> None:
        if self.ptr not in _state.owner_ctx:
            return  # pycuda: freeing twice is a no-op
        _check_same(_state.owner_ctx[self.ptr], "cuMemFree")
        _state.memory.pop(self.ptr, None)
        _state.owner_ctx.pop(self.ptr, None)


def _check_same(ctx: Context, what: str) -> None:
    if current_context(what) is not ctx:
        raise LogicError(f"{what} failed: invalid device context (object belongs to another context)")


def mem_alloc(nbytes: int) -> DeviceAllocation:
    ctx = current_context("cuMemAlloc")
    if faults.get("mem_alloc", 0) > 0:
        faults["mem_alloc"] -= 1
        raise MemoryError("cuMemAlloc failed: out of memory")
    with _state.lock:
        ptr = next(_state.ids)
        _state.memory[ptr] = np.zeros(int(nbytes), np.uint8)
        _state.owner_ctx[ptr] = ctx
    return DeviceAllocation(ptr, int(nbytes))


def pagelocked_empty(shape: Any, dtype: Any, order: str = "C", mem_flags: int = 0) -> npt.NDArray[Any]:
    current_context("cuMemHostAlloc")  # page-locked allocation needs a context, like the real one
    host: npt.NDArray[Any] = np.empty(shape, dtype, order=order)  # type: ignore[call-overload]
    with _state.lock:
        _state.pinned.append(host)
    return host


def is_pinned(array: npt.NDArray[Any]) -> bool:
    """Whether `array` lies in page-locked memory handed out by `pagelocked_empty` (a view of it counts)."""
    return any(np.shares_memory(array, host) for host in _state.pinned)


def device_view(ptr: int, what: str) -> npt.NDArray[np.uint8]:
    """The bytes behind a device pointer, checking it is live and belongs to the caller's current context."""
    if ptr not in _state.memory:
        raise LogicError(f"{what} failed: invalid device pointer {ptr:#x}")
    _check_same(_state.owner_ctx[ptr], what)
    return _state.memory[ptr]


def memcpy_htod_async(dest: Any, src: npt.NDArray[Any], stream: Stream | None = None) -> None:
    pinned = is_pinned(src)
    stats["htod"].append({"nbytes": int(src.nbytes), "dtype": src.dtype.name, "pinned": pinned})
    stats["htod_pageable"] += not pinned
    raw = np.ascontiguousarray(src).view(np.uint8).reshape(-1)
    buf = device_view(int(dest), "cuMemcpyHtoDAsync")
    if raw.size > buf.size:
        raise LogicError(f"cuMemcpyHtoDAsync failed: {raw.size} bytes into a {buf.size}-byte allocation")
    buf[: raw.size] = raw


def memcpy_dtoh_async(dest: npt.NDArray[Any], src: Any, stream: Stream | None = None) -> None:
    if not dest.flags.c_contiguous:
        raise LogicError("memcpy_dtoh_async needs a contiguous destination")
    buf = device_view(int(src), "cuMemcpyDtoHAsync")
    out = dest.reshape(-1).view(np.uint8)
    if out.size > buf.size:
        raise LogicError(f"cuMemcpyDtoHAsync failed: {out.size} bytes from a {buf.size}-byte allocation")
    out[:] = buf[: out.size]


def memcpy_htod(dest: Any, src: npt.NDArray[Any]) -> None:
    memcpy_htod_async(dest, src)


def memcpy_dtoh(dest: npt.NDArray[Any], src: Any) -> None:
    memcpy_dtoh_async(dest, src)
