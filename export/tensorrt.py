"""TensorRT engine building (TensorRT 10 and 11). Lookup and verification of cached engines live in the runtime
(`detector.runtime.engines`); this module only builds, and is injected into the runtime by the CLI.

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

import hashlib
import logging
import re
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

from detector.errors import ModelLoadError
from detector.files import write_atomic
from detector.runtime.engines import (
    EngineInfo,
    EngineSpec,
    EngineTarget,
    current_target,
    engine_key,
    engine_path,
    sidecar_path,
)
from detector.runtime.metadata import read_onnx_metadata, sha256_file

if TYPE_CHECKING:
    from typing_extensions import Buffer

log = logging.getLogger(__name__)


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
    onnx_path: str | Path, spec: EngineSpec, device_index: int = 0, timing_cache: bool = True
) -> EngineInfo:
    """Build `<engine_dir>/<key>.engine` and its JSON sidecar from `onnx_path`; overwrite any existing one.

    Its signature (minus `timing_cache`) is `detector.runtime.engines.EngineBuilder`, so the CLI can inject it."""
    profile = spec.profile
    precision = spec.precision
    onnx_path, engine_dir = Path(onnx_path), Path(spec.engine_dir)
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
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(spec.workspace_gb * (1 << 30)))
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
