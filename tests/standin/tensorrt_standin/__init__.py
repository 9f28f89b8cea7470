"""STAND-IN for TensorRT and pycuda, for CPU-only test machines. Not TensorRT: nothing here is fast or on a GPU.

It implements exactly the TensorRT builder/runtime and pycuda driver surface that `export/tensorrt.py` and
`detector/runtime/backends/tensorrt_backend.py` use, and runs the network with ONNX Runtime on host memory, so the
whole TensorRT code path (engine cache, buffers, profiles, batching, threading) executes in the normal test suite.
That the names and signatures exist in real TensorRT 10 and 11 is checked separately, by mypy against stubs generated
from the real bindings (tests/unit/detector/runtime/tensorrt/test_api_conformance.py).

It is strict where real CUDA/TensorRT are strict, so bugs that would only show on a GPU fail here too:
  * a CUDA context is current only on the thread that created/pushed it; every context-bound call (allocation,
    copies, streams, deserialisation, execution) from another thread raises `LogicError(... invalid device context)`;
  * an execution context used by two threads at once raises;
  * `execute_async_v3` requires an input shape inside the optimisation profile and addresses for every IO tensor,
    each pointing at a live allocation large enough for that tensor;
  * a serialized "engine" is a small container (magic, JSON header with the TensorRT version, GPU, TF32 flag and
    profile, ONNX bytes); a runtime of another version or GPU refuses it (None), as real TensorRT does;
  * primary contexts (`retain_primary_context`, shared between threads, reference counted) versus `make_context()`
    contexts (counted); the builder works in the calling thread's context, else device 0's primary context, as the
    CUDA runtime does, and records the device and thread it built on;
  * one TensorRT logger per process (the first given; a freed one is a use-after-free error); `trt.Logger` prints
    to stdout like the real default logger;
  * `None`/`False` where TensorRT returns them: `create_execution_context`, `deserialize_cuda_engine`,
    `create_timing_cache` (unreadable data), `set_timing_cache` (another GPU's cache), `get_timing_cache`;
    `TypeError` from `Builder`/`Runtime` when CUDA init fails; pycuda `MemoryError` (injected via `faults`);
  * profiles that span a static ONNX dimension are rejected at build; `set_input_shape`/`set_tensor_address`
    calls and input shapes are counted in `trt.stats`;
  * GPU faults at inference (issue 25): `cuda.faults["stream_synchronize"]` makes a stream sync raise
    `LaunchError` (an illegal address) and, like the real error, leaves every later context-bound call failing;
    `trt.faults["execute_false"]` makes `execute_async_v3` log an error and return False;
  * time, to see overlap: `trt.delays["execute"]`/`["build"]` keep an execution or a build busy; `trt.stats` records
    the most executions (`max_in_flight`) and builds (`max_builds_running`) that were running at once.

`install(monkeypatch)` puts it in `sys.modules` as `tensorrt`, `pycuda` and `pycuda.driver`.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from tensorrt_standin import cuda, trt

__all__ = ["cuda", "install", "reset", "trt"]


def reset(devices: list[tuple[str, tuple[int, int]]] | None = None, version: str = "10.16.1.11") -> None:
    """Fresh state: the given GPUs (default: one stand-in GPU), TensorRT `version`, no allocations or contexts."""
    cuda.reset(devices)
    trt.reset(version)


def install(monkeypatch: Any) -> None:
    """Make `import tensorrt` and `import pycuda.driver` resolve to the stand-ins for one test."""
    pycuda = types.ModuleType("pycuda")
    pycuda.__path__ = []
    pycuda.driver = cuda  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda)
    reset()
