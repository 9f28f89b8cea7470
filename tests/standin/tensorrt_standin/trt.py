"""STAND-IN for the `tensorrt` module (see the package docstring): builder, ONNX parser and runtime, executing the
network with ONNX Runtime on CPU."""

from __future__ import annotations

import json
import logging
import struct
import threading
from typing import Any

import numpy as np

from tensorrt_standin import cuda

__version__ = "10.16.1.11"
MAGIC = b"TRT-STANDIN-ENGINE\n"
log = logging.getLogger("tensorrt_standin")

# Everything execute_async_v3 saw, so tests can assert on threads, batch sizes and concurrency.
stats: dict[str, Any] = {}


def reset(version: str) -> None:
    global __version__
    __version__ = version
    stats.clear()
    stats.update(execute_threads=set(), batches=[], builds=0)


reset(__version__)


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


class Logger:
    VERBOSE, INFO, WARNING, ERROR = (_Enum(n, i) for i, n in enumerate(["VERBOSE", "INFO", "WARNING", "ERROR"]))

    def __init__(self, min_severity: _Enum = WARNING) -> None:
        self.min_severity = min_severity


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


_ONNX_TYPES = {1: DataType.FLOAT, 10: DataType.HALF, 6: DataType.INT32, 7: DataType.INT64, 9: DataType.BOOL}
_NP_TYPES = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT32: np.int32, DataType.INT64: np.int64}


# --- builder ---------------------------------------------------------------------------------------------------


class ITensor:
    def __init__(self, name: str, shape: Dims, dtype: _Enum) -> None:
        self.name, self.shape, self.dtype = name, shape, dtype


class INetworkDefinition:
    def __init__(self, flags: int) -> None:
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
    def __init__(self, network: INetworkDefinition, logger: Logger) -> None:
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
            return False
        self.network.onnx = bytes(model)
        self.network.inputs = _tensors(proto.graph.input)
        self.network.outputs = _tensors(proto.graph.output)
        return True


class IOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[Dims, Dims, Dims]] = {}

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:
        lo, mid, hi = Dims(min), Dims(opt), Dims(max)
        if not all(a <= b <= c for a, b, c in zip(lo, mid, hi, strict=True)):
            raise ValueError(f"stand-in: profile for {input} must satisfy min <= opt <= max, got {lo} {mid} {hi}")
        self.shapes[input] = (lo, mid, hi)


class ITimingCache:
    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)

    def serialize(self) -> memoryview:
        return memoryview(self.data or b"stand-in timing cache")


class IBuilderConfig:
    def __init__(self) -> None:
        self.pools: dict[_Enum, int] = {}
        self.profiles: list[IOptimizationProfile] = []
        self.timing_cache: ITimingCache | None = None

    def set_memory_pool_limit(self, pool: _Enum, pool_size: int) -> None:
        self.pools[pool] = int(pool_size)

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
        return ITimingCache(serialized_timing_cache)

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache:
        return self.timing_cache or ITimingCache(b"")


class Builder:
    def __init__(self, logger: Logger) -> None:
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
        stats["builds"] += 1
        header = {
            "version": __version__,
            "profile": {k: [list(d) for d in v] for k, v in profile.shapes.items()},
            "inputs": [t.name for t in network.inputs],
            "outputs": [t.name for t in network.outputs],
        }
        raw = json.dumps(header).encode()
        return memoryview(MAGIC + struct.pack("<Q", len(raw)) + raw + network.onnx)


# --- runtime ---------------------------------------------------------------------------------------------------


class Runtime:
    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None:
        context = cuda.current_context("deserialize_cuda_engine")  # engine memory lives in the current context
        data = bytes(serialized_engine)
        if not data.startswith(MAGIC):
            log.error("stand-in: engine deserialization failed: not an engine (magic mismatch)")
            return None
        (size,) = struct.unpack("<Q", data[len(MAGIC) : len(MAGIC) + 8])
        header = json.loads(data[len(MAGIC) + 8 : len(MAGIC) + 8 + size])
        if header["version"] != __version__:
            log.error("stand-in: version mismatch: engine plan %s, runtime %s", header["version"], __version__)
            return None
        return ICudaEngine(header, data[len(MAGIC) + 8 + size :], context)


class ICudaEngine:
    def __init__(self, header: dict[str, Any], onnx_bytes: bytes, context: cuda.Context) -> None:
        import onnx
        import onnxruntime as ort

        self.context = context
        self.profile = {k: tuple(Dims(d) for d in v) for k, v in header["profile"].items()}
        proto = onnx.ModelProto.FromString(onnx_bytes)
        self.tensors = {t.name: (TensorIOMode.INPUT, t) for t in _tensors(proto.graph.input)}
        self.tensors |= {t.name: (TensorIOMode.OUTPUT, t) for t in _tensors(proto.graph.output)}
        self.names = list(self.tensors)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
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

    def create_execution_context(self) -> IExecutionContext:
        cuda._check_same(self.context, "create_execution_context")
        return IExecutionContext(self)


class IExecutionContext:
    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine
        self.input_shapes: dict[str, Dims] = {}
        self.addresses: dict[str, int] = {}
        self.busy = threading.Lock()
        self._output_shapes: dict[tuple[Dims, ...], dict[str, Dims]] = {}

    def set_input_shape(self, name: str, shape: Any) -> bool:
        dims = Dims(shape)
        lo, _, hi = self.engine.profile[name]
        if len(dims) != len(lo) or not all(a <= d <= b for a, d, b in zip(lo, dims, hi, strict=True)):
            log.error("stand-in: input shape %s for %s outside the profile %s..%s", dims, name, lo, hi)
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
        self.addresses[name] = int(memory)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        cuda._check_same(self.engine.context, "execute_async_v3")
        if not self.busy.acquire(blocking=False):
            raise RuntimeError("stand-in: one IExecutionContext used by two threads at once")
        try:
            return self._execute()
        finally:
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
        stats["execute_threads"].add(threading.get_ident())
        outs = self.engine.session.run(None, feeds)
        for o, value in zip(self.engine.session.get_outputs(), outs, strict=True):
            raw = np.ascontiguousarray(value).view(np.uint8).reshape(-1)
            buf = cuda.device_view(self.addresses[o.name], "execute_async_v3")
            if buf.size < raw.size:
                raise RuntimeError(f"stand-in: output buffer of {o.name} holds {buf.size} bytes, needs {raw.size}")
            buf[: raw.size] = raw
        return True
