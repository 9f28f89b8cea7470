"""TensorRT engine lookup and verification: where engines live, what they were built for, when one may be loaded.

An engine is executable code tied to one TensorRT version and one GPU model, so every engine file has a JSON
sidecar recording what it was built from and for. An engine is loaded only when
  * it lies inside the configured engine_dir (symlinks resolved), and
  * its bytes hash to the sidecar's `engine_sha256`, and
  * the sidecar's TensorRT version, GPU and compute capability match this machine.
Anything else is refused with the reason; `resolve_engine` then asks the injected builder (`export.tensorrt`, wired
in by the CLI) for a new one, or says how to build it when no builder was given. *Building* lives in `export/`; this
module only finds and checks, so the serving runtime never imports the build code.

Builds are serialised per cache entry by a file lock beside it (`<key>.lock`, `build_lock`): replicas that start
together on one engine volume do not all build (and time tactics against each other on the same GPU); the first
builds, the others wait and then find and verify its engine. The lock is an OS lock on an open file (`filelock`,
fcntl/flock), which the kernel releases when its holder dies, so a replica killed mid-build leaves no stale lock:
the next one takes it at once and builds. (It needs a file system with working locks: local disks, Docker and
Kubernetes volumes; not every NFS setup.)

Files and hashes need neither TensorRT nor a GPU; `current_target` imports TensorRT and pycuda lazily.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from detector.config import EngineInputDtype, EnginePrecision
from detector.errors import BackendUnavailableError, InvalidInputError, MissingDependencyError, ModelLoadError
from detector.runtime.metadata import ModelMetadata, sha256_file

if TYPE_CHECKING:
    from detector.config import EngineConfig

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".json"
ENGINE_SUFFIX = ".engine"
SIDECAR_FORMAT = 2  # 2: target has cuda_major, sidecar has recipe; older sidecars are refused and rebuilt
PRECISIONS: tuple[str, ...] = get_args(EnginePrecision)  # what `export.engine.precision` may ask for
# What an engine really computes in (sidecar, `/model`): the request, except that a Q/DQ ONNX (`detector export
# int8`, models/model.int8.onnx) computes in int8 (float parts FP16) whatever was asked, and an ONNX that is FP16
# already stays FP16 (`engine_precision`).
ENGINE_PRECISIONS = (*PRECISIONS, "int8")
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
# What the engine's input takes: float32 pixels in [0, 1], or uint8 pixels 0-255 that the engine's first layers
# (a Cast and a multiply by 1/255, prepended at build time by export/uint8_input.py) normalise on the GPU: a quarter
# of the bytes to upload. float32 stays the default until a GPU has measured the difference (scripts/gpu_check.py).
INPUT_DTYPES: tuple[str, ...] = get_args(EngineInputDtype)
# What the builder does to an ONNX before TensorRT sees it and which builder settings it uses (FP16 conversion, TF32
# policy, profile derivation). Part of the cache key: bump it whenever export/tensorrt.py or export/fp16.py changes
# what an engine computes, so no engine built by an older recipe is ever reused. It lives here, not in export/,
# because the serving runtime must compute the same key without the build code.
# 3: keyed by the engine's real precision; TF32 policy from it; uint8 input option. 4: INT8 engines' float parts FP16.
BUILDER_RECIPE = 4
BUILD_LOCK_TIMEOUT_S = 3600.0  # a replica waits this long for another's build (a large model on a slow GPU: minutes)
INSTALL_HINT = "install TensorRT and pycuda on a machine with an NVIDIA GPU (pip install tensorrt-cu12 pycuda)"


@dataclass(frozen=True)
class EngineTarget:
    """What an engine is specific to: the TensorRT version and the GPU model that built it."""

    trt_version: str
    gpu_name: str
    compute_capability: str  # "8.9"
    cuda_major: str = "unknown"  # the CUDA major version TensorRT was built for (tensorrt-cu12 / -cu13)


@dataclass(frozen=True)
class BatchProfile:
    """The optimisation profile's batch range (height and width are fixed at the model's input size). For an ONNX
    with a static batch dimension the profile is that batch exactly (`effective_profile`)."""

    min_batch: int = 1
    opt_batch: int = 4
    max_batch: int = 8

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise InvalidInputError(
                f"engine batches must satisfy 1 <= min <= opt <= max, got {self.min_batch}/{self.opt_batch}/"
                f"{self.max_batch}"
            )


@dataclass(frozen=True)
class EngineSpec:
    """Everything an engine is built with, carried as one value from `export.engine` to the builder and the cache.

    Not checked again here: the values are `export.engine`'s, checked once by `detector.config.EngineConfig` (the
    CLI has no other way to set them); code that builds a spec directly (benchmarks, tests) passes known values."""

    precision: str = "fp16"  # PRECISIONS
    workspace_gb: float = 2.0
    profile: BatchProfile = field(default_factory=BatchProfile)
    engine_dir: str = "models/engines"  # engines are code: loaded only from here
    input_dtype: str = "float32"  # INPUT_DTYPES

    @classmethod
    def from_config(cls, engine: EngineConfig) -> EngineSpec:
        return cls(
            precision=engine.precision,
            workspace_gb=engine.workspace_gb,
            profile=BatchProfile(engine.min_batch, engine.opt_batch, engine.max_batch),
            engine_dir=engine.engine_dir,
            input_dtype=engine.input_dtype,
        )


@dataclass(frozen=True)
class EngineInfo:
    """The sidecar of one engine file."""

    engine_path: str
    key: str
    precision: str
    target: EngineTarget
    profile: BatchProfile
    onnx_sha256: str
    engine_sha256: str
    names: dict[int, str]
    imgsz: tuple[int, int]
    metadata: str  # the source ONNX's ModelMetadata JSON, so an engine file alone is self-describing
    created_at: str
    recipe: int = BUILDER_RECIPE
    tf32: bool = False  # whether FP32 layers may use TF32 (never for precision fp32)
    input_dtype: str = "float32"  # uint8: the engine takes 0-255 pixels and normalises them itself
    format: int = SIDECAR_FORMAT

    @property
    def path(self) -> Path:
        return Path(self.engine_path)

    @property
    def model_metadata(self) -> ModelMetadata:
        return ModelMetadata.from_json(self.metadata)

    def to_json(self) -> str:
        data = asdict(self)
        data["names"] = {str(k): v for k, v in self.names.items()}
        data["imgsz"] = list(self.imgsz)
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EngineInfo:
        data: dict[str, Any] = json.loads(text)
        if data.get("format") != SIDECAR_FORMAT:
            raise ValueError(f"unknown sidecar format {data.get('format')!r}")
        if data.get("precision") not in ENGINE_PRECISIONS or data.get("input_dtype", "float32") not in INPUT_DTYPES:
            raise ValueError(f"unknown precision {data.get('precision')!r} or input dtype {data.get('input_dtype')!r}")
        data["target"] = EngineTarget(**data["target"])
        data["profile"] = BatchProfile(**data["profile"])
        data["names"] = {int(k): str(v) for k, v in data["names"].items()}
        h, w = data["imgsz"]
        data["imgsz"] = (int(h), int(w))
        return cls(**data)


def engine_key(
    onnx_sha256: str,
    target: EngineTarget,
    precision: str,
    profile: BatchProfile,
    recipe: int = BUILDER_RECIPE,
    input_dtype: str = "float32",
) -> str:
    """Cache key: everything an engine depends on (ONNX, TensorRT version and its CUDA major, GPU, precision, batch
    profile, builder recipe, input dtype). Readable prefix for humans, digest for uniqueness."""
    identity = json.dumps(
        {
            "onnx": onnx_sha256,
            "target": asdict(target),
            "precision": precision,
            "profile": asdict(profile),
            "recipe": recipe,
            "input_dtype": input_dtype,
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", target.gpu_name).strip("-").lower() or "gpu"
    sm = target.compute_capability.replace(".", "")
    u8 = "-u8" if input_dtype == "uint8" else ""
    return f"{gpu}-sm{sm}-trt{target.trt_version}-cu{target.cuda_major}-{precision}{u8}-{digest}"


@dataclass(frozen=True)
class EngineIdentity:
    """What the cache key of `onnx_path`'s engine is computed from, found the same way by the runtime (lookup) and
    the builder (the file it writes)."""

    onnx_sha256: str
    profile: BatchProfile
    precision: str  # what the engine computes in (ENGINE_PRECISIONS), not only what was asked
    key: str


def engine_identity(onnx_path: str | Path, spec: EngineSpec, target: EngineTarget) -> EngineIdentity:
    model = _load_graph(onnx_path)
    onnx_sha = sha256_file(onnx_path)
    profile = _profile(model, spec.profile, onnx_path)
    precision = engine_precision(model, spec.precision)
    key = engine_key(onnx_sha, target, precision, profile, input_dtype=spec.input_dtype)
    return EngineIdentity(onnx_sha, profile, precision, key)


def _load_graph(onnx_path: str | Path) -> Any:
    import onnx  # core dependency; only the graph is read, not external weights

    return onnx.load(str(onnx_path), load_external_data=False)


def engine_precision(model: Any, requested: str) -> str:
    """What an engine built from `model` (an `onnx.ModelProto`) for `requested` computes in: int8 for a Q/DQ graph
    (explicit quantization: its Q/DQ nodes fix the INT8 regions; its float parts are built in FP16),
    fp16 for a graph whose float weights are all FP16 already, otherwise `requested`."""
    import onnx

    if any(node.op_type in QDQ_OPS for node in model.graph.node):
        return "int8"
    floats = {i.data_type for i in model.graph.initializer} & {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    return "fp16" if floats == {onnx.TensorProto.FLOAT16} else requested


def effective_profile(onnx_path: str | Path, requested: BatchProfile) -> BatchProfile:
    """The batch profile an engine for `onnx_path` can have: `requested` for a dynamic batch dimension; for a static
    one (`export.dynamic: false`) exactly that batch, min = opt = max, because TensorRT rejects any profile that
    spans a static dimension."""
    return _profile(_load_graph(onnx_path), requested, onnx_path)


def _profile(model: Any, requested: BatchProfile, onnx_path: str | Path) -> BatchProfile:
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if not inputs:
        raise ModelLoadError(f"{onnx_path} has no graph input")
    dims = inputs[0].type.tensor_type.shape.dim
    if not dims or not dims[0].HasField("dim_value") or dims[0].dim_value <= 0:
        return requested
    batch = int(dims[0].dim_value)
    fixed = BatchProfile(batch, batch, batch)
    if fixed != requested:
        log.info("%s has a static batch of %d: engine profile %s instead of %s", onnx_path, batch, fixed, requested)
    return fixed


def engine_path(engine_dir: str | Path, key: str) -> Path:
    return Path(engine_dir) / f"{key}{ENGINE_SUFFIX}"


def sidecar_path(engine: str | Path) -> Path:
    return Path(engine).with_suffix(SIDECAR_SUFFIX)


def confine(path: str | Path, engine_dir: str | Path) -> Path:
    """`path` with symlinks resolved, or ModelLoadError when it lies outside `engine_dir` (engines are code)."""
    root = Path(engine_dir).resolve()
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(root):
        raise ModelLoadError(
            f"refusing to load engine {path}: it resolves to {resolved}, outside the engine directory {root}. "
            "Engines are executable code; put them in inference engine_dir (export.engine.engine_dir)."
        )
    return resolved


def read_sidecar(engine: str | Path) -> EngineInfo:
    side = sidecar_path(engine)
    try:
        return EngineInfo.from_json(side.read_text())
    except FileNotFoundError as exc:
        raise ModelLoadError(
            f"engine {engine} has no sidecar {side}; rebuild it with `detector export engine`"
        ) from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"engine sidecar {side} is malformed ({exc}); rebuild the engine") from exc


def check_compatible(info: EngineInfo, target: EngineTarget) -> None:
    """BackendUnavailableError when the engine was built for another TensorRT version or GPU."""
    built = info.target
    if built.trt_version != target.trt_version or built.cuda_major != target.cuda_major:
        raise BackendUnavailableError(
            f"engine {info.engine_path} was built with TensorRT {built.trt_version} (CUDA {built.cuda_major}), this "
            f"machine has {target.trt_version} (CUDA {target.cuda_major}); engines do not move between TensorRT "
            "builds: rebuild it"
        )
    if (built.gpu_name, built.compute_capability) != (target.gpu_name, target.compute_capability):
        raise BackendUnavailableError(
            f"engine {info.engine_path} was built for {built.gpu_name} (sm {built.compute_capability}), this GPU is "
            f"{target.gpu_name} (sm {target.compute_capability}); rebuild it on this GPU"
        )


def load_verified(engine: str | Path, engine_dir: str | Path, target: EngineTarget) -> tuple[EngineInfo, bytes]:
    """The engine's sidecar and bytes, after every check above. The bytes returned are the bytes hashed, so the file
    cannot change between the check and deserialisation."""
    resolved = confine(engine, engine_dir)
    if not resolved.is_file():
        raise ModelLoadError(f"engine file not found: {engine}")
    info = read_sidecar(resolved)
    check_compatible(info, target)
    data = resolved.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != info.engine_sha256:
        raise ModelLoadError(
            f"engine {engine} does not match its sidecar (sha256 {actual[:12]}..., expected "
            f"{info.engine_sha256[:12]}...): corrupt or modified; refusing to load it"
        )
    return info, data


# What `export.tensorrt.build_engine` is to the runtime: (onnx_path, spec, device_index) -> the new engine's sidecar.
# Contract: it builds on GPU `device_index`. The TensorRT backend calls it on its CUDA owner thread, where that
# device's primary context is current (so tactics are timed on the GPU that will run the engine); called anywhere
# else, `build_engine` starts an owner thread for the device itself.
EngineBuilder = Callable[[Path, EngineSpec, int], EngineInfo]


def require_tensorrt() -> None:
    """MissingDependencyError unless `tensorrt` and `pycuda.driver` import. Callers then import them locally: a
    plain `import tensorrt as trt` keeps the module's real type, so mypy checks every call against TensorRT's API."""
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:  # ImportError, or OSError when libnvinfer is missing
        raise MissingDependencyError(f"TensorRT is not installed or cannot load ({exc}); {INSTALL_HINT}") from exc
    try:
        import pycuda.driver  # noqa: F401
    except Exception as exc:  # ImportError, or the driver library failing to load
        raise MissingDependencyError(f"pycuda cannot be imported ({exc}); {INSTALL_HINT}") from exc


def current_target(device_index: int = 0) -> EngineTarget:
    """This machine's TensorRT version and GPU `device_index` (no CUDA context is created)."""
    require_tensorrt()
    import tensorrt as trt

    # Lazily: the backends package imports this module. The CUDA binding stays in cuda_owner.py.
    from detector.runtime.backends.cuda_owner import device_properties

    name, (major, minor) = device_properties(device_index)
    return EngineTarget(
        trt_version=str(trt.__version__),
        gpu_name=name,
        compute_capability=f"{major}.{minor}",
        cuda_major=tensorrt_cuda_major(),
    )


def tensorrt_cuda_major() -> str:
    """The CUDA major version of the installed TensorRT build, from its wheel's name (tensorrt-cu12, tensorrt-cu13
    and their -libs/-bindings). TensorRT's Python module does not expose it; "unknown" for other installs."""
    from importlib import metadata

    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        match = re.fullmatch(r"tensorrt-cu(\d+)(?:-libs|-bindings)?", name)
        if match:
            return match.group(1)
    return "unknown"


def lock_path(engine: str | Path) -> Path:
    """The build lock of the cache entry `engine` (`<key>.engine` -> `<key>.lock`)."""
    return Path(engine).with_suffix(".lock")


@contextmanager
def build_lock(engine: str | Path, timeout_s: float = BUILD_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the build lock of the cache entry `engine` (see the module docstring); waits for another builder."""
    from filelock import FileLock, Timeout

    path = lock_path(engine)
    path.parent.mkdir(parents=True, exist_ok=True)
    # thread_local=False: the backend builds on its owner thread, which is not always the thread that locked.
    lock = FileLock(str(path), thread_local=False)
    started = time.monotonic()
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("another process or thread is building %s; waiting for it (lock %s)", Path(engine).name, path)
        try:
            lock.acquire(timeout=timeout_s)
        except Timeout as exc:
            raise BackendUnavailableError(
                f"waited {timeout_s:.0f} s for another build of {engine} (lock {path}) to finish"
            ) from exc
        log.info("the other build finished after %.1f s", time.monotonic() - started)
    try:
        yield
    finally:
        lock.release()


def resolve_engine(
    onnx_path: str | Path,
    spec: EngineSpec,
    device_index: int = 0,
    build: EngineBuilder | None = None,
    force: bool = False,
) -> tuple[EngineInfo, bytes]:
    """A valid cached engine for `onnx_path` on this machine (sidecar and verified bytes).

    A cached engine that fails verification (corrupt, modified, other TensorRT or GPU) is refused with a logged
    reason. A missing or refused engine is built by `build` when one was injected; without a builder (the serving
    image ships no build code) the error says which command builds it, and `auto` falls back to another backend.
    `force` (with `build`) rebuilds even a valid cached engine, under the same build lock.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ModelLoadError(f"model file not found: {onnx_path}")
    target = current_target(device_index)
    key = engine_identity(onnx_path, spec, target).key
    cached = engine_path(spec.engine_dir, key)
    found = None if force and build is not None else _cached(cached, spec, target)
    if found is not None:
        return found
    if build is None:
        raise BackendUnavailableError(
            f"no valid TensorRT {spec.precision} engine for {onnx_path} in {spec.engine_dir} (key {key}); build it "
            f"with `detector export engine --onnx {onnx_path}`"
        )
    with build_lock(cached):
        found = None if force else _cached(cached, spec, target)  # built by whoever held the lock before us
        if found is not None:
            return found
        log.info("no usable TensorRT engine for %s (key %s); building it (this takes a while, once)", onnx_path, key)
        info = build(onnx_path, spec, device_index)
        return load_verified(info.path, spec.engine_dir, target)


def _cached(cached: Path, spec: EngineSpec, target: EngineTarget) -> tuple[EngineInfo, bytes] | None:
    """The verified cache entry `cached`, or None (missing, or refused with a logged reason)."""
    if not cached.exists():
        return None
    try:
        return load_verified(cached, spec.engine_dir, target)
    except (ModelLoadError, BackendUnavailableError) as exc:
        log.warning("refusing cached engine %s: %s", cached, exc)
        return None


def rebuild_engine(
    onnx_path: str | Path, spec: EngineSpec, device_index: int, build: EngineBuilder | None, reason: str
) -> tuple[EngineInfo, bytes]:
    """Build `onnx_path`'s engine again because TensorRT refused the cached plan (`reason`), e.g. a driver or
    TensorRT patch update that the sidecar cannot see. Callers do this once: a fresh plan that is refused too is an
    error, not a loop."""
    if build is None:
        raise BackendUnavailableError(
            f"TensorRT refused the cached engine for {onnx_path} ({reason}); rebuild it with "
            f"`detector export engine --force --onnx {onnx_path}`"
        )
    log.warning("TensorRT refused the cached engine for %s (%s): rebuilding it once", onnx_path, reason)
    target = current_target(device_index)
    with build_lock(engine_path(spec.engine_dir, engine_identity(onnx_path, spec, target).key)):
        info = build(Path(onnx_path), spec, device_index)
    return load_verified(info.path, spec.engine_dir, target)
