"""STAND-IN for `pycuda.driver` (see the package docstring): host memory posing as device memory, with CUDA's
one-thread-per-current-context rule enforced."""

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


class _State:
    def __init__(self, devices: list[tuple[str, tuple[int, int]]]) -> None:
        self.devices = devices
        self.lock = threading.Lock()
        self.memory: dict[int, npt.NDArray[np.uint8]] = {}  # device pointer -> bytes
        self.owner_ctx: dict[int, Context] = {}  # device pointer -> context it was allocated in
        self.live_contexts: set[int] = set()
        self.ids = itertools.count(0x10000, 0x10000)


_state = _State(list(_DEFAULT_DEVICES))
_tls = threading.local()


def reset(devices: list[tuple[str, tuple[int, int]]] | None = None) -> None:
    global _state
    _state = _State(list(_DEFAULT_DEVICES if devices is None else devices))


def live_contexts() -> int:
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
    return stack[-1]


def init(flags: int = 0) -> None:
    if not _state.devices:
        raise Error("cuInit failed: no CUDA-capable device is detected")


class Context:
    def __init__(self, device: Device) -> None:
        self.device = device
        self.id = next(_state.ids)
        self.thread = threading.get_ident()
        _state.live_contexts.add(self.id)

    def pop(self) -> None:
        stack = _stack()
        if not stack or stack[-1] is not self:
            raise LogicError("cuCtxPopCurrent failed: context is not current on this thread")
        stack.pop()

    def push(self) -> None:
        _stack().append(self)

    def detach(self) -> None:
        _state.live_contexts.discard(self.id)

    def synchronize(self) -> None:
        current_context("cuCtxSynchronize")


class Device:
    def __init__(self, number: int) -> None:
        if not 0 <= number < len(_state.devices):
            raise LogicError(f"cuDeviceGet failed: invalid device ordinal {number}")
        self.number = number

    @staticmethod
    def count() -> int:
        return len(_state.devices)

    def name(self) -> str:
        return _state.devices[self.number][0]

    def compute_capability(self) -> tuple[int, int]:
        return _state.devices[self.number][1]

    def make_context(self, flags: int = 0) -> Context:
        ctx = Context(self)
        ctx.push()
        return ctx


class Stream:
    def __init__(self, flags: int = 0) -> None:
        self.context = current_context("cuStreamCreate")
        self.handle = next(_state.ids)

    def synchronize(self) -> None:
        _check_same(self.context, "cuStreamSynchronize")


class DeviceAllocation:
    def __init__(self, ptr: int, nbytes: int) -> None:
        self.ptr, self.nbytes = ptr, nbytes

    def __int__(self) -> int:
        return self.ptr

    def free(self) -> None:
        _check_same(_state.owner_ctx[self.ptr], "cuMemFree")
        _state.memory.pop(self.ptr, None)
        _state.owner_ctx.pop(self.ptr, None)


def _check_same(ctx: Context, what: str) -> None:
    if current_context(what) is not ctx:
        raise LogicError(f"{what} failed: invalid device context (object belongs to another context)")


def mem_alloc(nbytes: int) -> DeviceAllocation:
    ctx = current_context("cuMemAlloc")
    with _state.lock:
        ptr = next(_state.ids)
        _state.memory[ptr] = np.zeros(int(nbytes), np.uint8)
        _state.owner_ctx[ptr] = ctx
    return DeviceAllocation(ptr, int(nbytes))


def pagelocked_empty(shape: Any, dtype: Any, order: str = "C", mem_flags: int = 0) -> npt.NDArray[Any]:
    current_context("cuMemHostAlloc")  # page-locked allocation needs a context, like the real one
    return np.empty(shape, dtype, order=order)  # type: ignore[call-overload,no-any-return]


def device_view(ptr: int, what: str) -> npt.NDArray[np.uint8]:
    """The bytes behind a device pointer, checking it is live and belongs to the caller's current context."""
    if ptr not in _state.memory:
        raise LogicError(f"{what} failed: invalid device pointer {ptr:#x}")
    _check_same(_state.owner_ctx[ptr], what)
    return _state.memory[ptr]


def memcpy_htod_async(dest: Any, src: npt.NDArray[Any], stream: Stream | None = None) -> None:
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
