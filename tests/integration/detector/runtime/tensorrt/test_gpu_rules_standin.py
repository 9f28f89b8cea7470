"""What a real GPU enforces and the first stand-in did not (issue 14), each with the fix it proves.

Every test here fails against the pre-fix backend/builder: a stdout logger per object, builds on the CUDA runtime's
default device, `make_context()` per backend, unchecked timing-cache and execution-context results, no rebuild of a
refused plan, a 1/4/8 profile for a static-batch ONNX, TF32 left on for FP32, the configured precision reported,
`set_input_shape`/`set_tensor_address` on every call, one execution context.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import pytest

from detector.errors import BackendUnavailableError, ModelLoadError
from detector.runtime import BackendOptions, Detector, backends
from detector.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from detector.runtime.backends.tensorrt_backend import TensorRTBackend
from detector.runtime.engines import BatchProfile, EngineSpec, read_sidecar, resolve_engine
from export.tensorrt import build_engine

REPO = Path(__file__).resolve().parents[5]
QdqMaker = Callable[[Path, Path, Path], tuple[Path, np.ndarray]]  # the `qdq_onnx` fixture (conftest.py)
TWO_GPUS = [("NVIDIA L4", (8, 9)), ("NVIDIA L4", (8, 9))]


def _spec(engine_dir: Path, precision: str = "fp32", profile: BatchProfile | None = None) -> EngineSpec:
    return EngineSpec(precision=precision, profile=profile or BatchProfile(1, 2, 4), engine_dir=str(engine_dir))


def _options(engine_dir: Path, device: str = "cuda:0", precision: str = "fp32", **kw: object) -> BackendOptions:
    return BackendOptions(device=device, engine=_spec(engine_dir, precision), engine_builder=build_engine, **kw)  # type: ignore[arg-type]


def _image() -> np.ndarray:
    return np.full((128, 128, 3), 114, np.uint8)


# --- logger -------------------------------------------------------------------------------------------------------


def test_one_logger_per_process_to_logging_never_stdout(
    standin: ModuleType,
    model_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="tensorrt"):
        for _ in range(2):  # a hot reload: close, free, load again; the first logger must still be alive
            TensorRTBackend(model_path, _options(tmp_path)).close()
            gc.collect()
        build_engine(model_path, _spec(tmp_path / "again"))
    assert len(standin.trt.stats["loggers"]) == 1, "TensorRT was given more than one logger"
    assert capsys.readouterr().out == "", "TensorRT output reached stdout"
    assert "stand-in build on" in caplog.text, "TensorRT's messages must reach `logging`"


# --- device, thread, context ---------------------------------------------------------------------------------------


def test_build_and_inference_on_the_owner_thread_of_the_target_gpu(
    standin: ModuleType, model_path: Path, tmp_path: Path
) -> None:
    standin.reset(devices=TWO_GPUS)
    backend = TensorRTBackend(model_path, _options(tmp_path, device="cuda:1"))
    try:
        main = backend._main.thread_ident
        assert standin.trt.stats["build_devices"] == [1], "tactics were timed on another GPU"
        assert standin.trt.stats["build_threads"] == {main}
        assert standin.trt.stats["deserialize_threads"] == {main}
        assert backend.run(np.zeros((2, 3, 128, 128), np.float32)).shape[0] == 2
    finally:
        backend.close()


def test_cli_build_runs_on_the_requested_gpu(
    standin: ModuleType, model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import main

    standin.reset(devices=TWO_GPUS)
    configs = Path(__file__).resolve().parents[5] / "configs"
    args = ["--config-dir", str(configs), "export", "engine", "--onnx", str(model_path), "--device", "1"]
    assert main([*args, f"export.engine.engine_dir={tmp_path}", "export.engine.precision=fp32"]) == 0
    assert json.loads(capsys.readouterr().out)["precision"] == "fp32"  # stdout is exactly the JSON
    assert standin.trt.stats["build_devices"] == [1]
    assert standin.cuda.live_contexts() == 0


def test_primary_context_shared_during_a_reload_and_released(
    standin: ModuleType, model_path: Path, tmp_path: Path
) -> None:
    first = TensorRTBackend(model_path, _options(tmp_path))
    second = TensorRTBackend(model_path, _options(tmp_path))  # a hot reload: both alive for a moment
    try:
        assert standin.cuda.stats["made_contexts"] == 0, "a non-primary context was created"
        assert standin.cuda.live_contexts() == 1, "two contexts on one GPU during a reload"
    finally:
        first.close()
        second.close()
    assert standin.cuda.live_contexts() == 0 and standin.cuda.live_allocations() == 0


# --- failures auto falls back on ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "device_fault", "message"),
    [
        ("execution_context_none", None, "could not create an execution context.*OutOfMemory"),
        ("runtime", None, "cannot create a runtime"),
        ("builder", None, "cannot create a builder"),
        (None, "mem_alloc", "CUDA failed.*out of memory"),
    ],
)
def test_gpu_failures_are_backend_unavailable_and_auto_falls_back(
    standin: ModuleType,
    model_path: Path,
    tmp_path: Path,
    fault: str | None,
    device_fault: str | None,
    message: str,
) -> None:
    def arm() -> None:
        if fault:
            standin.trt.faults[fault] = 1
        if device_fault:
            standin.cuda.faults[device_fault] = 1

    arm()
    with pytest.raises(BackendUnavailableError, match=message):
        TensorRTBackend(model_path, _options(tmp_path / "a"))
    assert standin.cuda.live_contexts() == 0 and standin.cuda.live_allocations() == 0
    arm()
    backend = backends.create("auto", model_path, _options(tmp_path / "b"))
    try:
        assert backend.name != "tensorrt"
    finally:
        backend.close()


# --- stale engines and timing caches --------------------------------------------------------------------------------


def test_a_plan_tensorrt_refuses_is_rebuilt_once(standin: ModuleType, model_path: Path, tmp_path: Path) -> None:
    resolve_engine(model_path, _spec(tmp_path), 0, build=build_engine)
    standin.trt.faults["deserialize_none"] = 1  # e.g. a driver update: sidecar and hash still agree
    batch = np.random.default_rng(0).random((2, 3, 128, 128), dtype=np.float32)
    with Detector.load(model_path, backend="tensorrt", options=_options(tmp_path)) as det:
        assert det.backend_name == "tensorrt"  # the rebuilt engine serves, no fallback to another backend
        rebuilt = det.backend.run(batch)
    assert standin.trt.stats["builds"] == 2
    # ... and it computes the network: the same raw output as ONNX Runtime on the ONNX it was built from.
    np.testing.assert_allclose(
        rebuilt, OnnxRuntimeBackend(model_path, BackendOptions(device="cpu")).run(batch), atol=1e-4
    )

    standin.trt.faults["deserialize_none"] = 2  # refused again after the rebuild: an error, not a loop
    with pytest.raises(ModelLoadError, match=r"could not deserialize.*not compatible"):
        TensorRTBackend(model_path, _options(tmp_path))
    assert standin.trt.stats["builds"] == 3


@pytest.mark.parametrize("cache", ["garbage", "other-gpu", "none-after-build"])
def test_bad_timing_cache_is_moved_aside_and_the_build_goes_on(
    standin: ModuleType, model_path: Path, tmp_path: Path, cache: str
) -> None:
    build_engine(model_path, _spec(tmp_path))
    (cache_file,) = tmp_path.glob("timing-*.cache")
    if cache == "garbage":
        cache_file.write_bytes(b"\x00not a timing cache")
    elif cache == "other-gpu":
        cache_file.write_bytes(standin.trt.TIMING_MAGIC + json.dumps({"gpu": "Tesla T4"}).encode())
    else:
        standin.trt.faults["get_timing_cache_none"] = 1
    info = build_engine(model_path, _spec(tmp_path))
    assert info.path.is_file() and standin.trt.stats["builds"] == 2
    if cache != "none-after-build":
        assert cache_file.with_suffix(".cache.bad").is_file()
        build_engine(model_path, _spec(tmp_path))  # and the next build is clean: nothing moved again
        assert len(list(tmp_path.glob("*.bad"))) == 1


# --- profiles, TF32, precision ----------------------------------------------------------------------------------------


def test_static_batch_onnx_gets_its_own_batch_as_profile(standin: ModuleType, model_path: Path, tmp_path: Path) -> None:
    model = onnx.load(str(model_path))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 1  # what `export.dynamic: false` writes
    static = tmp_path / "static.onnx"
    onnx.save(model, str(static))
    info = build_engine(static, _spec(tmp_path / "engines", profile=BatchProfile(1, 4, 8)))
    assert info.profile == BatchProfile(1, 1, 1)
    with Detector.load(static, backend="tensorrt", options=_options(tmp_path / "engines")) as det:
        assert det.max_batch == 1
        assert len(det.predict_batch([_image()] * 3)) == 3  # split to the static batch
    assert standin.trt.stats["builds"] == 1, "the backend must find the engine built for the static profile"


def test_fp32_engines_have_tf32_off_and_report_their_real_precision(
    standin: ModuleType, model_path: Path, tmp_path: Path
) -> None:
    fp32 = build_engine(model_path, _spec(tmp_path, "fp32"))
    fp16 = build_engine(model_path, _spec(tmp_path, "fp16"))
    assert (fp32.tf32, fp16.tf32) == (False, True)
    assert standin.trt.MAGIC in fp32.path.read_bytes()[:64]
    # Loaded with a configuration that says fp16: /model must say what the engine is.
    backend = TensorRTBackend(fp32.path, _options(tmp_path, precision="fp16"))
    with Detector(backend, read_sidecar(fp32.path).model_metadata) as det:
        assert backend._engine.tf32 is False
        assert det.describe()["precision"] == "fp32"


# --- per-call work ---------------------------------------------------------------------------------------------------


def test_addresses_set_once_and_shapes_only_on_change(standin: ModuleType, model_path: Path, tmp_path: Path) -> None:
    backend = TensorRTBackend(model_path, _options(tmp_path))
    try:
        stats = standin.trt.stats
        io = backend._engine.num_io_tensors
        assert stats["set_tensor_address"] == backend.slots * io
        shapes = stats["set_input_shape"]
        for _ in range(10):
            backend.run(np.zeros((2, 3, 128, 128), np.float32))
        assert stats["set_input_shape"] - shapes <= backend.slots, "set_input_shape on every call"
        assert stats["set_tensor_address"] == backend.slots * io, "tensor addresses set per call"
    finally:
        backend.close()


def test_int8_qdq_onnx_builds_strongly_typed_as_is(
    standin: ModuleType, model_path: Path, tmp_path: Path, dataset_dir: Path, qdq_onnx: QdqMaker
) -> None:
    """A Q/DQ ONNX keeps its Q/DQ nodes (no INT8 flag or calibrator), its float parts go FP16 (issue 25, D3; the
    graph itself: test_gpu_faults_standin.py), and it is reported as int8."""
    qdq, batch = qdq_onnx(model_path, dataset_dir, tmp_path / "model.int8.onnx")
    info = build_engine(qdq, _spec(tmp_path / "engines", precision="fp16"))
    assert info.precision == "int8"
    import onnxruntime as ort

    expected = ort.InferenceSession(str(qdq), providers=["CPUExecutionProvider"]).run(None, {"images": batch})[0]
    backend = TensorRTBackend(qdq, _options(tmp_path / "engines", precision="fp16"))
    try:
        assert backend.precision == "int8"
        out = backend.run(batch)  # the quantized graph, its float parts in FP16: scores within FP16 rounding
        np.testing.assert_allclose(out[:, 4:], expected[:, 4:], atol=0.05)
    finally:
        backend.close()


def test_int8_engine_is_keyed_stored_and_served_as_int8(
    standin: ModuleType, model_path: Path, tmp_path: Path, dataset_dir: Path, qdq_onnx: QdqMaker
) -> None:
    """The engine of models/model.int8.onnx computes in int8 whatever `export.engine.precision` says: one engine for
    fp16 and fp32 requests, named, keyed and described as int8 in its sidecar, in `describe()` and on `/model`,
    loaded from the ONNX or from the .engine file."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from detector.config import load_config
    from detector.runtime.metadata import read_onnx_metadata

    qdq, _ = qdq_onnx(model_path, dataset_dir, tmp_path / "model.int8.onnx")
    engines = tmp_path / "engines"
    first = build_engine(qdq, _spec(engines, precision="fp16"))
    again, _ = resolve_engine(qdq, _spec(engines, precision="fp32"), 0, build=build_engine)
    assert again.path == first.path and standin.trt.stats["builds"] == 1, "one int8 engine, whatever was asked"
    assert "-int8-" in first.key and first.tf32
    assert json.loads(first.path.with_suffix(".json").read_text())["precision"] == "int8"
    assert read_onnx_metadata(qdq).precision == "fp32"  # ORT's quantizer wrote none: the graph decides, not metadata

    for source in (qdq, first.path):
        with Detector.load(source, backend="tensorrt", options=_options(engines, precision="fp16")) as det:
            assert det.describe()["precision"] == "int8"

    config = load_config(
        [f"inference.model_path={qdq}", "inference.backend=tensorrt"], config_dir=REPO / "configs", environ={}
    )
    app = create_app(config, lambda path, backend: Detector.load(path, backend, _options(engines, precision="fp32")))
    with TestClient(app) as client:
        deadline = time.monotonic() + 30
        while client.get("/health").status_code != 200:
            assert time.monotonic() < deadline, client.get("/health").text
            time.sleep(0.05)
        model = client.get("/model").json()
    assert model["backend"] == "tensorrt" and model["precision"] == "int8"
    assert standin.trt.stats["builds"] == 1


def _with_metadata(model: onnx.ModelProto, source: onnx.ModelProto) -> onnx.ModelProto:
    if not model.metadata_props:
        model.metadata_props.extend(source.metadata_props)
    return model


def test_rectangular_inputs_run_at_their_own_size(
    standin: ModuleType, model_path: Path, tmp_path: Path, dataset_dir: Path
) -> None:
    """The ONNX has dynamic H, W: the engine's profile spans them up to imgsz, so Detector letterboxes 4:3 images to
    128x96 instead of 128x128, with the same boxes as ONNX Runtime doing the same."""
    from detector.runtime.images import read_image

    images = [read_image(p)[:96] for p in sorted((dataset_dir / "images" / "val").glob("*.jpg"))[:6]]  # 128 x 96
    with Detector.load(model_path, backend="onnxruntime", options=BackendOptions(device="cpu"), conf=0.1) as ort:
        reference = ort.predict_batch(images)
    with Detector.load(model_path, backend="tensorrt", options=_options(tmp_path), conf=0.1) as det:
        assert det.rect and det.backend.input_spec.shape == (-1, 3, -1, -1)
        ours = det.predict_batch(images)
    assert {s[2:] for s in standin.trt.stats["input_shapes"][-2:]} == {(96, 128)}
    assert sum(len(r) for r in reference) > 0
    for a, b in zip(ours, reference, strict=True):
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-2)
        np.testing.assert_array_equal(a.class_id, b.class_id)
