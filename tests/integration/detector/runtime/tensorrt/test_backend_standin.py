"""The TensorRT backend and engine cache, executed for real against the CPU stand-in of TensorRT and pycuda.

The stand-in (tests/standin/tensorrt_standin) runs the engine's network with ONNX Runtime and enforces CUDA's
thread/context rules and TensorRT's profile/address rules, so these tests exercise the backend's buffers, batching,
owner thread and cache exactly as on a GPU, minus the GPU.

These run on the trained quick model; the engine keys, precisions and import hygiene, which need no model, are in
tests/unit/detector/runtime/tensorrt/test_backend_standin.py.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from detector.errors import BackendFailedError, BackendUnavailableError, InvalidInputError, ModelLoadError
from detector.runtime import BackendOptions, Detections, Detector, backends
from detector.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from detector.runtime.backends.tensorrt_backend import TensorRTBackend
from detector.runtime.engines import (
    BatchProfile,
    EngineSpec,
    read_sidecar,
    resolve_engine,
    sidecar_path,
)
from detector.runtime.images import read_image
from detector.runtime.metadata import read_onnx_metadata
from export.tensorrt import build_engine
from tests.matching import iou

CONF = 0.1  # low, so the quick model yields plenty of boxes to compare


@pytest.fixture(scope="module")
def images(dataset_dir: Path) -> list[np.ndarray]:
    return [read_image(p) for p in sorted((dataset_dir / "images" / "val").glob("*.jpg"))[:10]]


@pytest.fixture(scope="module")
def reference(model_path: Path, images: list[np.ndarray]) -> list[Detections]:
    with Detector.load(model_path, backend="onnxruntime", conf=CONF) as det:
        ref = det.predict_batch(images)
    assert sum(len(r) for r in ref) >= 10, "the quick model found too few boxes for a meaningful comparison"
    return ref


def _spec(engine_dir: Path, precision: str = "fp32", min_batch: int = 1, max_batch: int = 8) -> EngineSpec:
    profile = BatchProfile(min_batch, max(min_batch, min(4, max_batch)), max_batch)  # keep min <= opt <= max
    return EngineSpec(precision=precision, profile=profile, engine_dir=str(engine_dir))


def _options(engine_dir: Path, precision: str = "fp16", min_batch: int = 1, max_batch: int = 8) -> BackendOptions:
    """Options as the CLI builds them: the engine spec plus the injected builder."""
    spec = _spec(engine_dir, precision, min_batch, max_batch)
    return BackendOptions(device="cuda:0", engine=spec, engine_builder=build_engine)


def _trt_detector(model_path: Path, engine_dir: Path, **kw: object) -> Detector:
    return Detector.load(model_path, backend="tensorrt", options=_options(engine_dir, **kw), conf=CONF)


def _assert_same(ours: list[Detections], ref: list[Detections], atol: float = 1e-4) -> None:
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref, strict=True):
        assert len(a) == len(b)
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=atol * 100)  # pixels
        np.testing.assert_allclose(a.confidence, b.confidence, atol=atol)
        np.testing.assert_array_equal(a.class_id, b.class_id)


# --- detections --------------------------------------------------------------------------------------------------


def test_detections_equal_onnxruntime(
    standin: ModuleType, model_path: Path, tmp_path: Path, images: list[np.ndarray], reference: list[Detections]
) -> None:
    with _trt_detector(model_path, tmp_path, precision="fp32", max_batch=4) as det:
        assert det.backend_name == "tensorrt"
        assert det.max_batch == 4
        _assert_same(det.predict_batch(images), reference)
        _assert_same([det.predict(images[0])], reference[:1])
    assert standin.cuda.live_contexts() == 0 and standin.cuda.live_allocations() == 0, "close() leaked CUDA state"


def test_batch_larger_than_profile_is_split(
    standin: ModuleType, model_path: Path, tmp_path: Path, images: list[np.ndarray], reference: list[Detections]
) -> None:
    with _trt_detector(model_path, tmp_path, precision="fp32", max_batch=3) as det:
        _assert_same(det.predict_batch(images), reference)  # 10 images through a profile of at most 3
        # The backend itself splits too, for callers that bypass Detector.
        batch = np.random.default_rng(0).random((7, 3, 128, 128), dtype=np.float32)
        ort = OnnxRuntimeBackend(model_path, BackendOptions(device="cpu"))
        np.testing.assert_allclose(det.backend.run(batch), ort.run(batch), atol=1e-4)
    assert max(standin.trt.stats["batches"]) <= 3


def test_fp16_engine_close_to_fp32(
    standin: ModuleType, model_path: Path, tmp_path: Path, images: list[np.ndarray], reference: list[Detections]
) -> None:
    with _trt_detector(model_path, tmp_path, precision="fp16") as det:
        assert det.backend.engine_info.precision == "fp16"  # type: ignore[attr-defined]
        ours = det.predict_batch(images)
    matched = total = 0
    for a, b in zip(ours, reference, strict=True):
        total += len(b)
        if len(a) and len(b):
            ious = iou(b.xyxy, a.xyxy)
            for i in range(len(b)):
                j = int(np.argmax(ious[i]))
                if (
                    ious[i, j] >= 0.9
                    and a.class_id[j] == b.class_id[i]
                    and abs(a.confidence[j] - b.confidence[i]) < 0.02
                ):
                    matched += 1
    assert matched >= 0.95 * total, f"only {matched}/{total} FP32 boxes have an FP16 match"


def test_concurrent_calls_match_sequential_and_stay_on_one_thread(
    standin: ModuleType, model_path: Path, tmp_path: Path, images: list[np.ndarray], reference: list[Detections]
) -> None:
    with _trt_detector(model_path, tmp_path, precision="fp32", max_batch=4) as det:
        jobs = [i % len(images) for i in range(48)]
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda i: det.predict(images[i]), jobs))
        for i, r in zip(jobs, results, strict=True):
            _assert_same([r], [reference[i]])
        owners = {slot.owner.thread_ident for slot in det.backend._slots}  # type: ignore[attr-defined]
    assert len(owners) == 2, "expected two execution slots, each on its own owner thread"
    assert standin.trt.stats["execute_threads"] == owners, "TensorRT ran off the slots' owner threads (or one idled)"


def test_standin_rejects_cuda_work_off_the_owner_thread(standin: ModuleType, model_path: Path, tmp_path: Path) -> None:
    """Proves the stand-in would catch a backend that skipped the owner thread (the classic FastAPI failure)."""
    batch = np.zeros((1, 3, 128, 128), np.float32)
    backend = TensorRTBackend(model_path, _options(tmp_path, precision="fp32"))
    try:
        # A CUDA error at inference puts the backend out of service (issue 25, D1), whatever caused it.
        with pytest.raises(BackendFailedError, match="invalid device context") as caught:
            backend._enqueue(backend._slots[0], (1, 3, 128, 128))  # called on this thread, not the owner's
        assert isinstance(caught.value.__cause__, standin.cuda.LogicError)
    finally:
        backend.close()
    fresh = TensorRTBackend(model_path, _options(tmp_path, precision="fp32"))
    try:
        assert fresh.run(batch).shape[0] == 1  # the public path works from the same thread
    finally:
        fresh.close()


def test_bad_input_shape_and_closed_backend(standin: ModuleType, model_path: Path, tmp_path: Path) -> None:
    backend = TensorRTBackend(model_path, _options(tmp_path, precision="fp32"))
    with pytest.raises(InvalidInputError, match="batch"):
        backend.run(np.zeros((1, 3, 256, 256), np.float32))  # H, W above the profile's max (imgsz 128)
    with pytest.raises(InvalidInputError, match="batch"):
        backend.run(np.zeros((1, 4, 128, 128), np.float32))  # channels are fixed
    backend.close()
    backend.close()  # idempotent
    with pytest.raises(BackendUnavailableError, match="closed"):
        backend.run(np.zeros((1, 3, 128, 128), np.float32))


# --- engine cache ------------------------------------------------------------------------------------------------


def test_cache_reuses_a_valid_engine_and_builds_per_version_and_gpu(
    standin: ModuleType, model_path: Path, tmp_path: Path
) -> None:
    first, _ = resolve_engine(model_path, _spec(tmp_path), 0, build=build_engine)
    again, _ = resolve_engine(model_path, _spec(tmp_path), 0, build=build_engine)
    assert again.path == first.path and standin.trt.stats["builds"] == 1
    sidecar = json.loads(sidecar_path(first.path).read_text())
    assert sidecar["target"]["trt_version"] == "10.16.1.11"
    assert sidecar["names"] == {str(k): v for k, v in read_onnx_metadata(model_path).names.items()}
    assert {"onnx_sha256", "engine_sha256", "profile", "created_at", "precision", "imgsz"} <= set(sidecar)

    standin.reset(version="11.4.0.106")
    newer, _ = resolve_engine(model_path, _spec(tmp_path), 0, build=build_engine)
    standin.reset(devices=[("NVIDIA A100", (8, 0))])
    other_gpu, _ = resolve_engine(model_path, _spec(tmp_path), 0, build=build_engine)
    assert len({first.path, newer.path, other_gpu.path}) == 3
    assert len(list(tmp_path.glob("*.engine"))) == 3


@pytest.mark.parametrize("damage", ["corrupt", "foreign-version", "foreign-gpu", "malformed-sidecar"])
def test_cache_refuses_bad_engines_and_rebuilds(
    standin: ModuleType, model_path: Path, tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    info = build_engine(model_path, _spec(tmp_path))
    side = sidecar_path(info.path)
    data = json.loads(side.read_text())
    if damage == "corrupt":
        info.path.write_bytes(info.path.read_bytes()[:-100] + b"\0" * 100)
    elif damage == "foreign-version":
        data["target"]["trt_version"] = "10.0.0.6"
        side.write_text(json.dumps(data))
    elif damage == "foreign-gpu":
        data["target"]["gpu_name"] = "Tesla T4"
        side.write_text(json.dumps(data))
    else:
        side.write_text("{not json")
    reason = {"corrupt": "corrupt", "foreign-version": "TensorRT 10.0.0.6", "foreign-gpu": "Tesla T4"}.get(
        damage, "malformed"
    )
    with caplog.at_level(logging.WARNING):
        rebuilt, _ = resolve_engine(model_path, _spec(tmp_path), 0, build=build_engine)
    assert "refusing cached engine" in caplog.text and reason in caplog.text
    assert standin.trt.stats["builds"] == 2 and rebuilt.path == info.path
    # And the backend loads through the same path, ending with a working engine.
    with _trt_detector(model_path, tmp_path, precision="fp32") as det:
        assert len(det.predict_batch([np.full((128, 128, 3), 114, np.uint8)])) == 1


def test_engine_file_loads_only_from_engine_dir_and_when_verified(
    standin: ModuleType, model_path: Path, tmp_path: Path, images: list[np.ndarray], reference: list[Detections]
) -> None:
    engine_dir = tmp_path / "engines"
    info = build_engine(model_path, _spec(engine_dir))
    # A valid engine file loads, and its sidecar carries the metadata Detector needs.
    backend = TensorRTBackend(info.path, _options(engine_dir, precision="fp32"))
    with Detector(backend, read_sidecar(info.path).model_metadata, conf=CONF) as det:
        _assert_same(det.predict_batch(images[:3]), reference[:3])

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for suffix in (".engine", ".json"):
        (outside / f"copy{suffix}").write_bytes(info.path.with_suffix(suffix).read_bytes())
    with pytest.raises(ModelLoadError, match="outside the engine directory"):
        TensorRTBackend(outside / "copy.engine", _options(engine_dir))
    (engine_dir / "link.engine").symlink_to(outside / "copy.engine")
    with pytest.raises(ModelLoadError, match="outside the engine directory"):
        TensorRTBackend(engine_dir / "link.engine", _options(engine_dir))

    sidecar = json.loads(sidecar_path(info.path).read_text())
    sidecar["engine_sha256"] = "0" * 64
    sidecar_path(info.path).write_text(json.dumps(sidecar))
    with pytest.raises(ModelLoadError, match="does not match its sidecar"):
        TensorRTBackend(info.path, _options(engine_dir))
    sidecar_path(info.path).unlink()
    with pytest.raises(ModelLoadError, match="no sidecar"):
        TensorRTBackend(info.path, _options(engine_dir))


def test_engine_from_another_tensorrt_version_is_refused(standin: ModuleType, model_path: Path, tmp_path: Path) -> None:
    info = build_engine(model_path, _spec(tmp_path))
    standin.reset(version="11.4.0.106")
    with pytest.raises(BackendUnavailableError, match=r"built with TensorRT 10\.16\.1\.11.*11\.4\.0\.106"):
        TensorRTBackend(info.path, _options(tmp_path))


def test_engine_the_runtime_cannot_deserialize_is_a_load_error(
    standin: ModuleType, model_path: Path, tmp_path: Path
) -> None:
    # Sidecar and hash agree, but the plan itself is from another build: TensorRT returns None, we raise.
    info = build_engine(model_path, _spec(tmp_path))
    standin.trt.reset("10.99")
    forged = build_engine(model_path, _spec(tmp_path / "other"))
    standin.trt.reset("10.16.1.11")
    info.path.write_bytes(forged.path.read_bytes())
    side = json.loads(sidecar_path(info.path).read_text())
    side["engine_sha256"] = forged.engine_sha256
    sidecar_path(info.path).write_text(json.dumps(side))
    with pytest.raises(ModelLoadError, match=r"could not deserialize.*TensorRT said: .*version mismatch"):
        TensorRTBackend(info.path, _options(tmp_path))
    assert standin.cuda.live_contexts() == 0


def test_bad_batch_profile_is_a_typed_error(standin: ModuleType, model_path: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="min <= opt <= max"):
        EngineSpec(profile=BatchProfile(4, 2, 8))


# --- availability and fallback -----------------------------------------------------------------------------------


def test_no_gpu_is_unavailable_and_auto_falls_back(
    standin: ModuleType, model_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    standin.reset(devices=[])
    ok, why = TensorRTBackend.is_available()
    assert not ok and "no usable NVIDIA GPU" in why
    with caplog.at_level(logging.INFO):
        backend = backends.create("auto", model_path, _options(tmp_path))
    try:
        assert backend.name != "tensorrt"
        assert "skipping tensorrt" in caplog.text
    finally:
        backend.close()
    with pytest.raises(BackendUnavailableError, match="no usable NVIDIA GPU"):
        backends.create("tensorrt", model_path, _options(tmp_path))


def test_tensorrt_missing_is_unavailable_and_auto_falls_back(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # what `import tensorrt` sees when it is not installed
    ok, why = TensorRTBackend.is_available()
    assert not ok and "tensorrt cannot be imported" in why
    with caplog.at_level(logging.INFO):
        backend = backends.create("auto", model_path, _options(tmp_path))
    backend.close()
    assert backend.name != "tensorrt" and "skipping tensorrt" in caplog.text
    assert "tensorrt" in backends.available() and backends.available()["tensorrt"]


def test_cpu_device_is_refused(standin: ModuleType, model_path: Path, tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="NVIDIA GPUs only"):
        TensorRTBackend(model_path, BackendOptions(device="cpu", engine=_spec(tmp_path)))


def test_cli_builds_an_engine(
    standin: ModuleType, model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import main

    configs = Path(__file__).resolve().parents[5] / "configs"
    args = ["--config-dir", str(configs), "export", "engine", "--onnx", str(model_path)]
    args += [f"export.engine.engine_dir={tmp_path}", "export.engine.precision=fp32", "export.engine.max_batch=2"]
    args += ["export.engine.opt_batch=2"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["precision"] == "fp32" and out["profile"] == {"min_batch": 1, "opt_batch": 2, "max_batch": 2}
    assert Path(out["engine_path"]).is_file() and Path(out["sidecar"]).is_file()
    assert out["input_dtype"] == "float32"  # the default until a GPU measures uint8
    assert main([*args, "export.engine.input_dtype=uint8"]) == 0
    u8 = json.loads(capsys.readouterr().out)
    assert u8["input_dtype"] == "uint8" and u8["engine_path"] != out["engine_path"]
