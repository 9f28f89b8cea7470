"""STAND-IN for the `tensorrt` module (see the package docstring): builder, ONNX parser and runtime, executing the
network with ONNX Runtime on CPU."""

from __future__ import annotations

import json
import logging
import struct
import sys
import threading
import time
import weakref
from typing import Any

import numpy as np

from tensorrt_standin import cuda

__version__ = "10.16.1.11"
MAGIC = b"TRT-STANDIN-ENGINE\n"
log = logging.getLogger("tensorrt_standin")

# What the builder and execute_async_v3 saw, so tests can assert on threads, devices, batch sizes and shape changes.
stats: dict[str, Any] = {}
# Failures to inject, as counts: "builder" / "runtime" (constructor raises TypeError like a failed CUDA init),
# "deserialize_none", "execution_context_none", "get_timing_cache_none", "execute_false" (execute_async_v3 logs an
# error and returns False, as TensorRT does when it cannot enqueue).
faults: dict[str, int] = {}
# Seconds to spend inside an operation, so tests can see overlap: "execute" (each execute_async_v3), "build" (each
# build_serialized_network). The GIL is released while sleeping, as the real calls release it.
delays: dict[str, float] = {}
# TensorRT keeps ONE logger per process: the first one given to a Builder/Runtime/Refitter (nvinfer1::getLogger()).
# Later objects with another logger get a warning, and messages keep going to the first. pybind11 keeps a logger
# alive only as long as the object it was given to, so a per-object logger that is then freed leaves TensorRT with a
# dangling pointer: modelled by a weak reference that must still be alive when TensorRT logs.
_process_logger: weakref.ReferenceType[ILogger] | None = None
_stats_lock = threading.Lock()


def reset(version: str) -> None:
    global __version__, _process_logger
    __version__ = version
    stats.clear()
    stats.update(
        execute_threads=set(),
        batches=[],
        input_shapes=[],
        builds=0,
        build_devices=[],
        build_threads=set(),
        deserialize_threads=set(),
        loggers=set(),
        set_input_shape=0,
        set_tensor_address=0,
        execution_contexts=0,
        in_flight=0,  # execute_async_v3 calls running now, and the most ever at once (any context)
        max_in_flight=0,
        builds_running=0,  # build_serialized_network calls running now, and the most ever at once (any thread)
        max_builds_running=0,
    )
    faults.clear()
    delays.clear()
    _process_logger = None


def _fault(name: str) -> bool:
    if faults.get(name, 0) > 0:
        faults[name] -= 1
        return True
    return False


class _Enum:
    def __init__(self, name: str, value: int) -> None:
        self.name, self.value = name, value

    def __int__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"<{self.name}>"

    def __hash__(self) -> int:
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Enum) and other.name == self.name


class _Severity(_Enum):
    def __lt__(self, other: _Severity) -> bool:  # like TensorRT: a lower value is more severe
        return self.value < other.value

    def __le__(self, other: _Severity) -> bool:
        return self.value <= other.value


class ILogger:
    class Severity:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = (
            _Severity(n, i) for i, n in enumerate(["INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"])
        )

    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = (
        Severity.INTERNAL_ERROR,
        Severity.ERROR,
        Severity.WARNING,
        Severity.INFO,
        Severity.VERBOSE,
    )

    def __init__(self) -> None:
        pass

    def log(self, severity: _Severity, msg: str) -> None:
        raise NotImplementedError("ILogger.log must be overridden")


class Logger(ILogger):
    """TensorRT's default logger: prints to STDOUT (pyCore.cpp's DefaultLogger), which is what corrupts JSON output."""

    def __init__(self, min_severity: _Severity = ILogger.WARNING) -> None:
        super().__init__()
        self.min_severity = min_severity

    def log(self, severity: _Severity, msg: str) -> None:
        if severity <= self.min_severity:
            sys.stdout.write(f"[TRT] [{severity.name[0]}] {msg}\n")


def _attach_logger(logger: ILogger) -> None:
    global _process_logger
    if not isinstance(logger, ILogger):
        raise TypeError("stand-in: a TensorRT logger must be a trt.ILogger")
    stats["loggers"].add(id(logger))
    if _process_logger is None:
        _process_logger = weakref.ref(logger)
    elif _process_logger() is not logger:
        _emit(
            ILogger.WARNING,
            "The logger passed into createInferRuntime/createInferBuilder differs from one already provided for an "
            "existing builder, runtime, or refitter. Uses of the global logger will return the existing value.",
        )


def _emit(severity: _Severity, msg: str) -> None:
    """Log through the process-wide logger, as TensorRT does."""
    if _process_logger is None:
        return
    logger = _process_logger()
    if logger is None:
        raise RuntimeError(
            "stand-in: TensorRT logged through a freed logger (use-after-free on a GPU: keep one logger per process)"
        )
    logger.log(severity, msg)


class BuilderFlag:
    TF32 = _Enum("BuilderFlag.TF32", 0)


class DataType:
    FLOAT, HALF, INT32, INT64, BOOL, UINT8 = (
        _Enum(f"DataType.{n}", i) for i, n in enumerate(["FLOAT", "HALF", "INT32", "INT64", "BOOL", "UINT8"])
    )


class TensorIOMode:
    NONE, INPUT, OUTPUT = (_Enum(f"TensorIOMode.{n}", i) for i, n in enumerate(["NONE", "INPUT", "OUTPUT"]))


class NetworkDefinitionCreationFlag:  # like TensorRT 11: STRONGLY_TYPED only, no EXPLICIT_BATCH
    STRONGLY_TYPED = _Enum("NetworkDefinitionCreationFlag.STRONGLY_TYPED", 1)


class MemoryPoolType:
    WORKSPACE = _Enum("MemoryPoolType.WORKSPACE", 0)


class Dims(tuple[int, ...]):
    def __new__(cls, shape: Any = ()) -> Dims:
        return super().__new__(cls, (int(d) for d in shape))


_ONNX_TYPES = {
    1: DataType.FLOAT,
    10: DataType.HALF,
    6: DataType.INT32,
    7: DataType.INT64,
    9: DataType.BOOL,
    2: DataType.UINT8,
}
_NP_TYPES = {
    DataType.FLOAT: np.float32,
    DataType.HALF: np.float16,
    DataType.INT32: np.int32,
    DataType.INT64: np.int64,
    DataType.UINT8: np.uint8,
}


# --- builder ---------------------------------------------------------------------------------------------------


class ITensor:
    def __init__(self, name: str, shape: Dims, dtype: _Enum) -> None:
        self.name, self.shape, self.dtype = name, shape, dtype


class INetworkDefinition:
    def __init__(self, flags: int) -> None:
        self.device = _builder_context().device
        if not flags & (1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED)):
            raise TypeError("stand-in: networks must be created STRONGLY_TYPED (TensorRT 11 has no other kind)")
        self.onnx: bytes | None = None
        self.inputs: list[ITensor] = []
        self.outputs: list[ITensor] = []

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def get_input(self, index: int) -> ITensor:
        return self.inputs[index]


def _tensors(values: Any) -> list[ITensor]:
    out = []
    for v in values:
        dims = Dims(d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim)
        out.append(ITensor(v.name, dims, _ONNX_TYPES[v.type.tensor_type.elem_type]))
    return out


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
        _attach_logger(logger)
        self.network = network
        self.errors: list[str] = []

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> str:
        return self.errors[index]

    def parse(self, model: bytes) -> bool:
        import onnx

        try:
            proto = onnx.ModelProto.FromString(bytes(model))
            onnx.checker.check_model(proto)
        except Exception as exc:
            self.errors.append(f"ModelImporter: {exc}")
            _emit(ILogger.ERROR, f"ModelImporter: {exc}")
            return False
        problem = _uint8_problem(proto)
        if problem:
            self.errors.append(problem)
            _emit(ILogger.ERROR, problem)
            return False
        self.network.onnx = bytes(model)
        self.network.inputs = _tensors(proto.graph.input)
        self.network.outputs = _tensors(proto.graph.output)
        return True


def _uint8_problem(proto: Any) -> str | None:
    """TensorRT's UINT8 rule (onnx-tensorrt ModelImporter.cpp, `DataType.UINT8` docs): UINT8 is only a network input
    or output type; a UINT8 input may only feed a Cast to FLOAT or HALF, and no node may produce an intermediate
    UINT8 tensor."""
    import onnx

    uint8 = onnx.TensorProto.UINT8
    inputs = {v.name for v in proto.graph.input if v.type.tensor_type.elem_type == uint8}
    outputs = {v.name for v in proto.graph.output}
    for node in proto.graph.node:
        to = next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None
        for name in node.input:
            if name in inputs and to not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
                return f"ModelImporter: node {node.name or node.op_type}: UINT8 input {name} must be cast to FLOAT/HALF"
        if to == uint8 and any(o not in outputs for o in node.output):
            return f"ModelImporter: node {node.name}: TensorRT does not support UINT8 types for intermediate tensors!"
    return None


class IOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[Dims, Dims, Dims]] = {}

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:
        lo, mid, hi = Dims(min), Dims(opt), Dims(max)
        if not all(a <= b <= c for a, b, c in zip(lo, mid, hi, strict=True)):
            raise ValueError(f"stand-in: profile for {input} must satisfy min <= opt <= max, got {lo} {mid} {hi}")
        self.shapes[input] = (lo, mid, hi)


TIMING_MAGIC = b"TRT-STANDIN-TIMING\n"


class ITimingCache:
    """Records which GPU its timings were measured on; TensorRT refuses another GPU's cache (ignore_mismatch=False)."""

    def __init__(self, gpu: str | None) -> None:
        self.gpu = gpu

    def serialize(self) -> memoryview:
        return memoryview(TIMING_MAGIC + json.dumps({"gpu": self.gpu}).encode())


class IBuilderConfig:
    def __init__(self) -> None:
        self.pools: dict[_Enum, int] = {}
        self.profiles: list[IOptimizationProfile] = []
        self.timing_cache: ITimingCache | None = None
        self.flags = {BuilderFlag.TF32}  # TensorRT's default: TF32 allowed for FP32 layers

    def set_flag(self, flag: _Enum) -> None:
        self.flags.add(flag)

    def clear_flag(self, flag: _Enum) -> None:
        self.flags.discard(flag)

    def get_flag(self, flag: _Enum) -> bool:
        return flag in self.flags

    def set_memory_pool_limit(self, pool: _Enum, pool_size: int) -> None:
        self.pools[pool] = int(pool_size)

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache | None:
        data = bytes(serialized_timing_cache)
        if not data:
            return ITimingCache(None)
        if not data.startswith(TIMING_MAGIC):
            _emit(ILogger.ERROR, "Error Code 1: Serialization (timing cache: unrecognised data)")
            return None
        return ITimingCache(json.loads(data[len(TIMING_MAGIC) :])["gpu"])

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        gpu = _builder_context().device.name()
        if cache.gpu is not None and cache.gpu != gpu and not ignore_mismatch:
            _emit(ILogger.ERROR, f"timing cache was created on {cache.gpu}, this device is {gpu}")
            return False
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        if _fault("get_timing_cache_none"):
            return None
        return self.timing_cache


def _builder_context() -> cuda.Context:
    """The context TensorRT's builder works in: the calling thread's current one, else (CUDA runtime semantics)
    the primary context of device 0, whatever device the caller meant."""
    return cuda.current_or_none() or cuda.primary_context(0)


def _cuda_init_or_type_error(what: str) -> None:
    """pybind11 turns TensorRT's nullptr (CUDA init failed) into TypeError, not a TensorRT error."""
    if not cuda._state.devices or _fault(what):
        raise TypeError("pybind11::init(): factory function returned nullptr")


class Builder:
    def __init__(self, logger: ILogger) -> None:
        _cuda_init_or_type_error("builder")
        _attach_logger(logger)
        self.logger = logger

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(flags)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> memoryview | None:
        if network.onnx is None or len(config.profiles) != 1:
            log.error("stand-in build: needs a parsed network and exactly one optimisation profile")
            return None
        profile = config.profiles[0]
        missing = [t.name for t in network.inputs if t.name not in profile.shapes]
        if missing or MemoryPoolType.WORKSPACE not in config.pools:
            log.error("stand-in build: profile lacks %s or no workspace limit", missing)
            return None
        for t in network.inputs:  # a static dimension admits exactly its own value in every profile shape
            lo, _, hi = profile.shapes[t.name]
            for axis, d in enumerate(t.shape):
                if d >= 0 and not lo[axis] == hi[axis] == d:
                    _emit(
                        ILogger.ERROR,
                        f"IBuilder::buildSerializedNetwork: Error Code 4: profile for {t.name} has {lo}..{hi}, "
                        f"which conflicts with its static dimension {axis} = {d}",
                    )
                    return None
        ctx = _builder_context()
        if network.device.number != ctx.device.number:
            _emit(ILogger.ERROR, "network and build on different devices")
            return None
        with _stats_lock:
            stats["builds_running"] += 1
            stats["max_builds_running"] = max(stats["max_builds_running"], stats["builds_running"])
        try:
            time.sleep(delays.get("build", 0.0))  # tactic timing takes a while: concurrent builders overlap here
        finally:
            with _stats_lock:
                stats["builds_running"] -= 1
        stats["builds"] += 1
        stats["build_devices"].append(ctx.device.number)
        stats["build_threads"].add(threading.get_ident())
        _emit(ILogger.WARNING, f"stand-in build on {ctx.device.name()}: tactics timed on device {ctx.device.number}")
        if config.timing_cache is not None:
            config.timing_cache.gpu = ctx.device.name()
        header = {
            "version": __version__,
            "gpu": ctx.device.name(),
            "tf32": BuilderFlag.TF32 in config.flags,
            "profile": {k: [list(d) for d in v] for k, v in profile.shapes.items()},
            "inputs": [t.name for t in network.inputs],
            "outputs": [t.name for t in network.outputs],
        }
        raw = json.dumps(header).encode()
        return memoryview(MAGIC + struct.pack("<Q", len(raw)) + raw + network.onnx)


# --- runtime ---------------------------------------------------------------------------------------------------


class Runtime:
    def __init__(self, logger: ILogger) -> None:
        _cuda_init_or_type_error("runtime")
        _attach_logger(logger)
        self.logger = logger

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None:
        context = cuda.current_context("deserialize_cuda_engine")  # engine memory lives in the current context
        stats["deserialize_threads"].add(threading.get_ident())
        data = bytes(serialized_engine)
        if not data.startswith(MAGIC):
            _emit(ILogger.ERROR, "stand-in: engine deserialization failed: not an engine (magic mismatch)")
            return None
        (size,) = struct.unpack("<Q", data[len(MAGIC) : len(MAGIC) + 8])
        header = json.loads(data[len(MAGIC) + 8 : len(MAGIC) + 8 + size])
        if header["version"] != __version__:
            _emit(ILogger.ERROR, f"stand-in: version mismatch: engine plan {header['version']}, runtime {__version__}")
            return None
        if header["gpu"] != context.device.name() or _fault("deserialize_none"):
            _emit(ILogger.ERROR, "stand-in: the engine plan is not compatible with this device or build")
            return None
        return ICudaEngine(header, data[len(MAGIC) + 8 + size :], context)


def _has_fp16_qdq(proto: Any) -> bool:
    import onnx

    halves = {i.name for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[1] in halves for n in proto.graph.node)


class ICudaEngine:
    def __init__(self, header: dict[str, Any], onnx_bytes: bytes, context: cuda.Context) -> None:
        import onnx
        import onnxruntime as ort

        self.context = context
        self.tf32 = bool(header["tf32"])
        self.profile = {k: tuple(Dims(d) for d in v) for k, v in header["profile"].items()}
        proto = onnx.ModelProto.FromString(onnx_bytes)
        self.tensors = {t.name: (TensorIOMode.INPUT, t) for t in _tensors(proto.graph.input)}
        self.tensors |= {t.name: (TensorIOMode.OUTPUT, t) for t in _tensors(proto.graph.output)}
        self.names = list(self.tensors)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        if _has_fp16_qdq(proto):  # ORT's CPU Q/DQ fusions (QLinearConcat...) take fp32 scales only; TensorRT's
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # don't: run the ops as written
        self.session = ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    @property
    def num_optimization_profiles(self) -> int:
        return 1

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def get_tensor_mode(self, name: str) -> _Enum:
        return self.tensors[name][0]

    def get_tensor_dtype(self, name: str) -> _Enum:
        return self.tensors[name][1].dtype

    def get_tensor_shape(self, name: str) -> Dims:
        return self.tensors[name][1].shape

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]:
        if profile_index != 0 or name not in self.profile:
            raise ValueError(f"stand-in: no profile {profile_index} for {name}")
        return list(self.profile[name])

    def create_execution_context(self) -> IExecutionContext | None:
        cuda._check_same(self.context, "create_execution_context")
        if _fault("execution_context_none"):  # what TensorRT returns when it cannot allocate activation memory
            _emit(ILogger.ERROR, "Error Code 2: OutOfMemory (requested size was 123456789 bytes)")
            return None
        stats["execution_contexts"] += 1
        return IExecutionContext(self)


class IExecutionContext:
    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine
        self.input_shapes: dict[str, Dims] = {}
        self.addresses: dict[str, int] = {}
        self.busy = threading.Lock()
        self._output_shapes: dict[tuple[Dims, ...], dict[str, Dims]] = {}

    def set_input_shape(self, name: str, shape: Any) -> bool:
        stats["set_input_shape"] += 1  # each call re-plans the execution: tests count them
        dims = Dims(shape)
        lo, _, hi = self.engine.profile[name]
        if len(dims) != len(lo) or not all(a <= d <= b for a, d, b in zip(lo, dims, hi, strict=True)):
            _emit(ILogger.ERROR, f"stand-in: input shape {dims} for {name} outside the profile {lo}..{hi}")
            return False
        self.input_shapes[name] = dims
        return True

    def get_tensor_shape(self, name: str) -> Dims:
        mode, tensor = self.engine.tensors[name]
        if mode == TensorIOMode.INPUT:
            return self.input_shapes.get(name, tensor.shape)
        key = tuple(self.input_shapes[n] for n in sorted(self.input_shapes))
        if key not in self._output_shapes:  # shape inference by running zeros once per input shape
            feeds = {
                n: np.zeros(self.input_shapes[n], _NP_TYPES[self.engine.tensors[n][1].dtype]) for n in self.input_shapes
            }
            outs = self.engine.session.run(None, feeds)
            names = [o.name for o in self.engine.session.get_outputs()]
            self._output_shapes[key] = {n: Dims(o.shape) for n, o in zip(names, outs, strict=True)}
        return self._output_shapes[key][name]

    def set_tensor_address(self, name: str, memory: int) -> bool:
        if name not in self.engine.tensors:
            return False
        stats["set_tensor_address"] += 1
        self.addresses[name] = int(memory)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        cuda._check_same(self.engine.context, "execute_async_v3")
        if not self.busy.acquire(blocking=False):
            raise RuntimeError("stand-in: one IExecutionContext used by two threads at once")
        with _stats_lock:
            stats["in_flight"] += 1
            stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
        try:
            if _fault("execute_false"):
                _emit(
                    ILogger.ERROR, "IExecutionContext::enqueueV3: Error Code 1: Cuda Runtime (invalid resource handle)"
                )
                return False
            time.sleep(delays.get("execute", 0.0))  # the GPU is busy with this batch: another slot may run meanwhile
            return self._execute()
        finally:
            with _stats_lock:
                stats["in_flight"] -= 1
            self.busy.release()

    def _execute(self) -> bool:
        missing = [n for n in self.engine.names if n not in self.addresses]
        unset = [
            n for n, (m, _) in self.engine.tensors.items() if m == TensorIOMode.INPUT and n not in self.input_shapes
        ]
        if missing or unset:
            raise RuntimeError(f"stand-in: execute with no address for {missing} / no input shape for {unset}")
        feeds = {}
        for name, shape in self.input_shapes.items():
            dtype = np.dtype(_NP_TYPES[self.engine.tensors[name][1].dtype])
            nbytes = int(np.prod(shape)) * dtype.itemsize
            buf = cuda.device_view(self.addresses[name], "execute_async_v3")
            if buf.size < nbytes:
                raise RuntimeError(f"stand-in: input buffer of {name} holds {buf.size} bytes, needs {nbytes}")
            feeds[name] = buf[:nbytes].view(dtype).reshape(shape).copy()
            stats["batches"].append(int(shape[0]))
            stats["input_shapes"].append(tuple(int(d) for d in shape))
        stats["execute_threads"].add(threading.get_ident())
        outs = self.engine.session.run(None, feeds)
        for o, value in zip(self.engine.session.get_outputs(), outs, strict=True):
            raw = np.ascontiguousarray(value).view(np.uint8).reshape(-1)
            buf = cuda.device_view(self.addresses[o.name], "execute_async_v3")
            if buf.size < raw.size:
                raise RuntimeError(f"stand-in: output buffer of {o.name} holds {buf.size} bytes, needs {raw.size}")
            buf[: raw.size] = raw
        return True


reset(__version__)
