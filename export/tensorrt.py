"""TensorRT engine building (TensorRT 10 and 11) and the engine cache's build-if-missing entry point.

API choices that hold for both major versions (checked by mypy against each version's real stubs, see
scripts/trt_stubs.py and tests/unit/tensorrt/test_api_conformance.py):
  * networks are created STRONGLY_TYPED: TensorRT 11 removed `EXPLICIT_BATCH` and `BuilderFlag.FP16`, so precision
    comes from the ONNX's own types: FP16 engines are built from an FP16 ONNX made by `export.fp16`;
  * the workspace is `set_memory_pool_limit(MemoryPoolType.WORKSPACE, ...)`;
  * one optimisation profile over the batch dimension, height and width fixed at the model's input size;
  * a timing cache per TensorRT version and GPU lives in the engine directory, so rebuilds are fast.

TensorRT and pycuda are imported inside functions only: this module must import on machines without them (the CLI
registers `detector export engine` everywhere and explains what is missing when it runs).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from detector.errors import BackendUnavailableError, InvalidInputError, MissingDependencyError, ModelLoadError
from detector.files import write_atomic
from detector.runtime.metadata import read_onnx_metadata, sha256_file
from export.engine_cache import (
    BatchProfile,
    EngineInfo,
    EngineTarget,
    engine_key,
    engine_path,
    load_verified,
    sidecar_path,
)

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from detector.config import Config

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16")
INSTALL_HINT = "install TensorRT and pycuda on a machine with an NVIDIA GPU (pip install tensorrt-cu12 pycuda)"


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
    import pycuda.driver as cuda
    import tensorrt as trt

    try:
        cuda.init()
        count = cuda.Device.count()
    except Exception as exc:  # pycuda.driver.Error: no driver, no device
        raise BackendUnavailableError(f"no usable NVIDIA GPU ({exc})") from exc
    if not 0 <= device_index < count:
        raise BackendUnavailableError(f"GPU {device_index} requested, {count} visible")
    device = cuda.Device(device_index)
    major, minor = device.compute_capability()
    return EngineTarget(
        trt_version=str(trt.__version__), gpu_name=str(device.name()), compute_capability=f"{major}.{minor}"
    )


def _onnx_bytes(onnx_path: Path, precision: str, model_precision: str) -> bytes:
    if precision == "fp32" or model_precision == "fp16":
        return onnx_path.read_bytes()
    import onnx

    from export.fp16 import convert_to_fp16

    log.info("converting %s to FP16 for a strongly typed FP16 engine", onnx_path)
    return bytes(convert_to_fp16(onnx.load(str(onnx_path))).SerializeToString())


def _host_bytes(memory: object) -> bytes:
    """Copy a `tensorrt.IHostMemory`: it implements the buffer protocol, which pybind11-generated stubs cannot say."""
    return bytes(cast("Buffer", memory))


def _timing_cache_path(engine_dir: Path, target: EngineTarget) -> Path:
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", target.gpu_name).strip("-").lower()
    return engine_dir / f"timing-{gpu}-sm{target.compute_capability.replace('.', '')}-trt{target.trt_version}.cache"


def build_engine(
    onnx_path: str | Path,
    engine_dir: str | Path,
    precision: str = "fp16",
    workspace_gb: float = 2.0,
    min_batch: int = 1,
    opt_batch: int = 4,
    max_batch: int = 8,
    timing_cache: bool = True,
    device_index: int = 0,
) -> EngineInfo:
    """Build `<engine_dir>/<key>.engine` and its JSON sidecar from `onnx_path`; overwrite any existing one."""
    if precision not in PRECISIONS:
        raise InvalidInputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if workspace_gb <= 0:
        raise InvalidInputError(f"workspace_gb must be > 0, got {workspace_gb}")
    profile = BatchProfile(min_batch, opt_batch, max_batch)
    onnx_path, engine_dir = Path(onnx_path), Path(engine_dir)
    metadata = read_onnx_metadata(onnx_path)
    target = current_target(device_index)  # first: says clearly when TensorRT or the GPU is missing
    import tensorrt as trt

    onnx_sha = sha256_file(onnx_path)
    key = engine_key(onnx_sha, target, precision, profile)
    out = engine_path(engine_dir, key)
    log.info("building TensorRT %s engine %s from %s (batch %s)", precision, out, onnx_path, asdict(profile))

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(_onnx_bytes(onnx_path, precision, metadata.precision)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelLoadError(f"TensorRT cannot parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    opt_profile = builder.create_optimization_profile()
    h, w = metadata.imgsz
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        channels = int(tensor.shape[1])
        opt_profile.set_shape(
            tensor.name,
            trt.Dims([profile.min_batch, channels, h, w]),
            trt.Dims([profile.opt_batch, channels, h, w]),
            trt.Dims([profile.max_batch, channels, h, w]),
        )
    config.add_optimization_profile(opt_profile)

    cache_file = _timing_cache_path(engine_dir, target)
    if timing_cache:
        previous = cache_file.read_bytes() if cache_file.is_file() else b""
        # ignore_mismatch=False: a cache from another GPU would be wrong, and TensorRT says so instead of using it.
        config.set_timing_cache(config.create_timing_cache(previous), False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelLoadError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    data = _host_bytes(serialized)
    if timing_cache:
        write_atomic(cache_file, _host_bytes(config.get_timing_cache().serialize()))

    info = EngineInfo(
        engine_path=str(out),
        key=key,
        precision=precision,
        target=target,
        profile=profile,
        onnx_sha256=onnx_sha,
        engine_sha256=hashlib.sha256(data).hexdigest(),
        names=metadata.names,
        imgsz=metadata.imgsz,
        metadata=metadata.to_json(),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    # Engine first, sidecar last: a sidecar only ever describes a complete engine file.
    write_atomic(out, data)
    write_atomic(sidecar_path(out), info.to_json().encode())
    log.info("built %s (%.1f MB)", out, len(data) / 1e6)
    return info


def resolve_engine(
    onnx_path: str | Path,
    engine_dir: str | Path,
    precision: str = "fp16",
    workspace_gb: float = 2.0,
    min_batch: int = 1,
    opt_batch: int = 4,
    max_batch: int = 8,
    device_index: int = 0,
    build: Callable[..., EngineInfo] = build_engine,
) -> tuple[EngineInfo, bytes]:
    """A valid cached engine for `onnx_path` on this machine (sidecar and verified bytes), building it if missing.

    A cached engine that fails verification (corrupt, modified, other TensorRT or GPU) is refused with a logged
    reason and rebuilt.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ModelLoadError(f"model file not found: {onnx_path}")
    profile = BatchProfile(min_batch, opt_batch, max_batch)
    target = current_target(device_index)
    key = engine_key(sha256_file(onnx_path), target, precision, profile)
    cached = engine_path(engine_dir, key)
    if cached.exists():
        try:
            return load_verified(cached, engine_dir, target)
        except (ModelLoadError, BackendUnavailableError) as exc:
            log.warning("refusing cached engine %s: %s; rebuilding", cached, exc)
    else:
        log.info("no cached TensorRT engine for %s (key %s); building it (this takes a while, once)", onnx_path, key)
    info = build(
        onnx_path,
        engine_dir,
        precision=precision,
        workspace_gb=workspace_gb,
        min_batch=profile.min_batch,
        opt_batch=profile.opt_batch,
        max_batch=profile.max_batch,
        device_index=device_index,
    )
    return load_verified(info.path, engine_dir, target)


# --- CLI -------------------------------------------------------------------------------------------------------


def _cmd_engine(args: argparse.Namespace, config: Config) -> None:
    eng = config.export.engine
    kwargs: dict[str, Any] = {
        "precision": args.precision or eng.precision,
        "workspace_gb": args.workspace_gb or eng.workspace_gb,
        "min_batch": args.min_batch or eng.min_batch,
        "opt_batch": args.opt_batch or eng.opt_batch,
        "max_batch": args.max_batch or eng.max_batch,
        "device_index": args.device,
    }
    onnx_path = args.onnx or config.export.onnx_path
    engine_dir = args.engine_dir or eng.engine_dir
    if args.force:
        info = build_engine(onnx_path, engine_dir, timing_cache=not args.no_timing_cache, **kwargs)
    else:
        build = functools.partial(build_engine, timing_cache=not args.no_timing_cache)
        info, _ = resolve_engine(onnx_path, engine_dir, build=build, **kwargs)
    print(json.dumps(json.loads(info.to_json()) | {"sidecar": str(sidecar_path(info.path))}, indent=2))


def add_engine_command(export_subparsers: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    """Register `detector export engine` (defaults from `export.engine` in configs/export.yaml)."""
    p = add(
        "engine",
        _cmd_engine,
        "build (or reuse from the cache) a TensorRT engine for this GPU from an ONNX model",
        export_subparsers,
    )
    p.add_argument("--onnx", help="ONNX model (default: export.onnx_path)")
    p.add_argument("--precision", choices=PRECISIONS, help="default: export.engine.precision")
    p.add_argument("--engine-dir", help="default: export.engine.engine_dir")
    p.add_argument("--workspace-gb", type=float)
    p.add_argument("--min-batch", type=int)
    p.add_argument("--opt-batch", type=int)
    p.add_argument("--max-batch", type=int)
    p.add_argument("--device", type=int, default=0, help="GPU index")
    p.add_argument("--force", action="store_true", help="rebuild even when a valid cached engine exists")
    p.add_argument("--no-timing-cache", action="store_true")
