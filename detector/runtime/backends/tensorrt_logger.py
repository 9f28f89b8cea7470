"""The one TensorRT logger of this process: forwards to `logging` (stderr), never to stdout.

Why one: TensorRT keeps a single process-wide logger, the first one given to a Builder, Runtime or Refitter
(`nvinfer1::getLogger()`); later objects with another logger only get a warning. pybind11 keeps a logger alive only
as long as the object it was passed to, so a logger per backend, freed at a hot reload, leaves TensorRT logging
through a dangling pointer. This one is created once and kept alive by this module for the life of the process.

Why not `trt.Logger`: its default implementation prints to stdout, which corrupts the JSON that `detector predict`
and `detector export engine` print there.

It also remembers the most recent errors, so a `None` from `deserialize_cuda_engine` or `build_serialized_network`
becomes a `ModelLoadError` that says what TensorRT said (`errors_since(mark)`).

Attribution: the history is process-wide, but the backend's slots call TensorRT from their own owner threads at
the same time, so "errors since my mark" would also hand one slot another slot's errors. Each error records the
thread TensorRT logged it on (TensorRT reports an API call's errors synchronously, on the calling thread), and a
thread's `errors_since` leaves out errors logged on any OTHER thread that takes marks (another slot or builder).
Errors from threads that never take a mark (TensorRT's own worker threads during a build) are still included.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import deque
from typing import Any

log = logging.getLogger("tensorrt")

_lock = threading.Lock()
_logger: Any = None  # the trt.ILogger subclass instance; module-global, so never freed before the process ends
# (sequence number, thread, message) of recent ERROR/INTERNAL_ERROR. Thread objects, not idents: idents are reused
# once a thread ends, which would attribute a new thread's errors to a dead owner.
_errors: deque[tuple[int, threading.Thread, str]] = deque(maxlen=64)
_seq = 0
_marking: weakref.WeakSet[threading.Thread] = weakref.WeakSet()  # threads that took a mark: their errors are theirs


def _record_error(msg: str) -> None:
    global _seq
    with _lock:
        _seq += 1
        _errors.append((_seq, threading.current_thread(), msg))


def error_mark() -> int:
    """A position in the error history; pass it to `errors_since` after a TensorRT call (same thread)."""
    with _lock:
        _marking.add(threading.current_thread())
        return _seq


def errors_since(mark: int) -> list[str]:
    """Errors logged after `mark` on this thread, or on a thread that takes no marks (TensorRT's own workers)."""
    me = threading.current_thread()
    with _lock:
        return [msg for seq, who, msg in _errors if seq > mark and (who is me or who not in _marking)]


def describe_errors(mark: int) -> str:
    """TensorRT's errors since `mark` as one clause for an error message ("" when it said nothing)."""
    errors = errors_since(mark)
    return f": TensorRT said: {' | '.join(errors[-3:])}" if errors else " (TensorRT logged no error)"


def trt_logger() -> Any:
    """The process-wide `tensorrt.ILogger` (created on first use; imports tensorrt)."""
    global _logger
    with _lock:
        if _logger is not None:
            return _logger
        import tensorrt as trt

        levels = {
            trt.ILogger.INTERNAL_ERROR: logging.CRITICAL,
            trt.ILogger.ERROR: logging.ERROR,
            trt.ILogger.WARNING: logging.WARNING,
            trt.ILogger.INFO: logging.DEBUG,  # TensorRT's INFO is build chatter: debug level here
            trt.ILogger.VERBOSE: logging.DEBUG,
        }
        errors = {trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR}

        # Typed as Any: without TensorRT installed mypy sees `trt.ILogger` as Any, and a class cannot subclass Any.
        base: Any = trt.ILogger

        class _ToLogging(base):  # type: ignore[misc]
            def __init__(self) -> None:
                trt.ILogger.__init__(self)  # pybind11 trampolines need the base initialised explicitly

            def log(self, severity: Any, msg: str) -> None:
                # Called from inside TensorRT (C++), possibly from its worker threads: must never raise.
                try:
                    if severity in errors:
                        _record_error(msg)
                    log.log(levels.get(severity, logging.WARNING), "%s", msg)
                except Exception:  # a logging failure must not become a TensorRT failure
                    pass

        _logger = _ToLogging()
        return _logger
