"""TensorRT engine building (TensorRT 10 and 11). Lookup and verification of cached engines live in the runtime
(`detector.runtime.engines`); this module only builds, and is injected into the runtime by the CLI.

API choices that hold for both major versions (checked by mypy against each version's real stubs, see
scripts/trt_stubs.py and tests/unit/detector/runtime/tensorrt/test_api_conformance.py):
  * networks are created STRONGLY_TYPED: TensorRT 11 removed `EXPLICIT_BATCH` and `BuilderFlag.FP16`, so precision
    comes from the ONNX's own types: FP16 engines are built from an FP16 ONNX made by `export.fp16`, and an INT8
    Q/DQ ONNX keeps its Q/DQ nodes (they fix the INT8 regions; no INT8 flag, no calibrator) with every float part,
    scales included, converted to FP16 at opset 19 (`export.fp16.convert_qdq_to_fp16`), so what is not INT8 runs in
    FP16 rather than FP32;
  * FP32 engines clear `BuilderFlag.TF32` (on by default in both versions), so FP32 means FP32;
  * the workspace is `set_memory_pool_limit(MemoryPoolType.WORKSPACE, ...)`;
  * `input_dtype: uint8` (export/uint8_input.py): the parsed ONNX, an in-memory copy, takes uint8 pixels and
    normalises them in its first nodes, a Cast to float and a multiply by 1/255; TensorRT takes UINT8 only as a
    network input or output that is cast to FLOAT/HALF right away (onnx-tensorrt's ModelImporter, `DataType.UINT8`
    docs), which is exactly this. The ONNX file itself is never changed;
  * one optimisation profile over the batch dimension (exactly the ONNX's batch when it is static), and, when the
    ONNX's height and width are dynamic, over H, W from one stride up to the model's input size (rectangular inputs);
  * a timing cache per TensorRT version and GPU lives in the engine directory, so rebuilds are fast. Every result
    is checked: an unreadable or foreign cache is moved aside and the build continues with an empty one.

Where it runs: on GPU `device_index`, with that device's primary context current on the building thread (TensorRT
times tactics on the current context's GPU). The TensorRT backend calls `build_engine` on its CUDA owner thread;
called from anywhere else (`detector export engine`), it starts a `CudaOwner` for the device and builds there.

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
from typing import TYPE_CHECKING, Any, cast

from detector.errors import BackendUnavailableError, ModelLoadError
from detector.files import write_atomic
from detector.runtime.backends.cuda_owner import CudaOwner, context_is_current, cuda_errors
from detector.runtime.backends.tensorrt_logger import describe_errors, error_mark, trt_logger
from detector.runtime.engines import (
    BUILDER_RECIPE,
    EngineInfo,
    EngineSpec,
    EngineTarget,
    current_target,
    engine_identity,
    engine_path,
    engine_precision,
    require_tensorrt,
    sidecar_path,
)
from detector.runtime.metadata import read_onnx_metadata

if TYPE_CHECKING:
    from typing_extensions import Buffer

log = logging.getLogger(__name__)


def _onnx_bytes(onnx_path: Path, precision: str) -> bytes:
    """The ONNX TensorRT parses for an engine that computes in `precision` (`engine_precision` of the file)."""
    import onnx

    if precision == "fp32":
        return onnx_path.read_bytes()
    model = onnx.load(str(onnx_path))
    if precision == "int8":  # Q/DQ regions in INT8, everything else FP16 (export/fp16.py says why); file untouched
        from export.fp16 import convert_qdq_to_fp16

        log.info("converting the float parts of %s to FP16 for a strongly typed INT8 engine", onnx_path)
        return bytes(convert_qdq_to_fp16(model).SerializeToString())
    if engine_precision(model, "fp32") == "fp16":  # already FP16: build as is
        return onnx_path.read_bytes()
    from export.fp16 import convert_to_fp16

    log.info("converting %s to FP16 for a strongly typed FP16 engine", onnx_path)
    return bytes(convert_to_fp16(model).SerializeToString())


def _host_bytes(memory: object) -> bytes:
    """Copy a `tensorrt.IHostMemory`: it implements the buffer protocol, which pybind11-generated stubs cannot say."""
    return bytes(cast("Buffer", memory))


def _timing_cache_path(engine_dir: Path, target: EngineTarget) -> Path:
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", target.gpu_name).strip("-").lower()
    sm = target.compute_capability.replace(".", "")
    return engine_dir / f"timing-{gpu}-sm{sm}-trt{target.trt_version}-cu{target.cuda_major}.cache"


def _move_aside(path: Path, why: str) -> None:
    """Keep a refused timing cache for inspection, out of the way of every later build."""
    bad = path.with_suffix(path.suffix + ".bad")
    log.warning("timing cache %s %s: moved to %s, building with an empty cache", path, why, bad)
    path.replace(bad)


def _use_timing_cache(config: Any, cache_file: Path) -> None:
    """Load `cache_file` into `config` (or an empty cache). Each TensorRT call here may fail without raising:
    `create_timing_cache` returns None for unreadable data, `set_timing_cache` False for another GPU's cache."""
    if cache_file.is_file():
        mark = error_mark()
        cache = config.create_timing_cache(cache_file.read_bytes())
        if cache is None:
            _move_aside(cache_file, f"is unreadable{describe_errors(mark)}")
        # ignore_mismatch=False: timings from another GPU would be wrong; TensorRT refuses them instead.
        elif config.set_timing_cache(cache, False):
            return
        else:
            _move_aside(cache_file, f"was refused (another GPU or TensorRT){describe_errors(mark)}")
    empty = config.create_timing_cache(b"")
    if empty is None or not config.set_timing_cache(empty, False):
        log.warning("TensorRT cannot create an empty timing cache; building without one")


def _save_timing_cache(config: Any, cache_file: Path) -> None:
    cache = config.get_timing_cache()
    if cache is None:  # a finished build must not fail over its cache
        log.warning("TensorRT returned no timing cache after the build; %s not updated", cache_file)
        return
    write_atomic(cache_file, _host_bytes(cache.serialize()))


def build_engine(
    onnx_path: str | Path, spec: EngineSpec, device_index: int = 0, timing_cache: bool = True
) -> EngineInfo:
    """Build `<engine_dir>/<key>.engine` and its JSON sidecar from `onnx_path` on GPU `device_index`; overwrite any
    existing one.

    Its signature (minus `timing_cache`) is `detector.runtime.engines.EngineBuilder`, so the CLI can inject it. On a
    thread where that device's context is current (the backend's owner thread) it builds right there; anywhere else
    it builds on a CUDA owner thread of that device."""
    require_tensorrt()
    if context_is_current(device_index):
        return _build(Path(onnx_path), spec, device_index, timing_cache)
    owner = CudaOwner(device_index, name="tensorrt-build")
    try:
        return owner.call(lambda: _build(Path(onnx_path), spec, device_index, timing_cache))
    finally:
        owner.close()


def _build(onnx_path: Path, spec: EngineSpec, device_index: int, timing_cache: bool) -> EngineInfo:
    import tensorrt as trt

    engine_dir = Path(spec.engine_dir)
    metadata = read_onnx_metadata(onnx_path)
    target = current_target(device_index)
    identity = engine_identity(onnx_path, spec, target)
    profile, onnx_sha, key, precision = identity.profile, identity.onnx_sha256, identity.key, identity.precision
    out = engine_path(engine_dir, key)
    log.info(
        "building TensorRT %s engine %s from %s (batch %s, %s input)",
        precision,
        out,
        onnx_path,
        asdict(profile),
        spec.input_dtype,
    )

    logger = trt_logger()
    try:
        builder = trt.Builder(logger)
    except TypeError as exc:  # pybind11: "factory function returned nullptr", i.e. TensorRT could not init CUDA
        raise BackendUnavailableError(f"TensorRT cannot create a builder on GPU {device_index} ({exc})") from exc
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    onnx_bytes = _onnx_bytes(onnx_path, precision)
    if spec.input_dtype == "uint8":  # last: whatever the graph became, it now starts from 0-255 pixels
        from export.uint8_input import with_uint8_input

        onnx_bytes = with_uint8_input(onnx_bytes)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelLoadError(f"TensorRT cannot parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(spec.workspace_gb * (1 << 30)))
    tf32 = precision != "fp32"  # the engine's real precision: an int8 or FP16 ONNX asked for as fp32 is not fp32
    if not tf32:  # TF32 is on by default and rounds FP32 matmul/conv inputs to 10-bit mantissas
        config.clear_flag(trt.BuilderFlag.TF32)
    opt_profile = builder.create_optimization_profile()
    h, w = metadata.imgsz
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        channels = int(tensor.shape[1])
        # Dynamic H, W in the ONNX: a rectangular profile from one stride up to imgsz (optimised for imgsz), so a
        # 4:3 image letterboxed to 640x480 does not pay for 640x640. Static H, W: exactly imgsz.
        rect = int(tensor.shape[2]) < 0 and int(tensor.shape[3]) < 0
        lo_h, lo_w = (min(metadata.stride, h), min(metadata.stride, w)) if rect else (h, w)
        opt_profile.set_shape(
            tensor.name,
            trt.Dims([profile.min_batch, channels, lo_h, lo_w]),
            trt.Dims([profile.opt_batch, channels, h, w]),
            trt.Dims([profile.max_batch, channels, h, w]),
        )
    config.add_optimization_profile(opt_profile)

    cache_file = _timing_cache_path(engine_dir, target)
    if timing_cache:
        _use_timing_cache(config, cache_file)

    mark = error_mark()
    try:
        serialized = builder.build_serialized_network(network, config)
    except cuda_errors() as exc:
        raise BackendUnavailableError(f"TensorRT build on GPU {device_index} failed: {exc}") from exc
    if serialized is None:
        raise ModelLoadError(f"TensorRT failed to build an engine from {onnx_path}{describe_errors(mark)}")
    data = _host_bytes(serialized)
    if timing_cache:
        _save_timing_cache(config, cache_file)

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
        recipe=BUILDER_RECIPE,
        tf32=tf32,
        input_dtype=spec.input_dtype,
    )
    # Engine first, sidecar last: a sidecar only ever describes a complete engine file.
    write_atomic(out, data)
    write_atomic(sidecar_path(out), info.to_json().encode())
    log.info("built %s (%.1f MB)", out, len(data) / 1e6)
    return info
