"""Issue 25 (TensorRT, third pass), against the CPU stand-in: each test fails on the code before its fix.

D1  a CUDA fault at inference (an illegal address at the stream sync, False from execute_async_v3) marks the backend
    failed: BackendFailedError now and for every later call, /health 503 with the reason, the server told to exit;
D2  model threads follow the backend's slots by default, and two batches are on the "GPU" at once;
D3  an INT8 Q/DQ ONNX is built with its float parts in FP16 (opset 19, FP16 scales), the file itself untouched;
D5  concurrent builders of one cache entry: one builds, the other waits and reuses; a dead holder's lock is no lock;
D7  close() wakes callers waiting for a slot and stops every owner thread even when a slot never comes back.

These need the trained quick model; D7's other half (one thread's TensorRT errors are not reported as another's)
needs none and is in tests/unit/detector/runtime/tensorrt/test_gpu_faults_standin.py.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
import pytest

from detector.errors import BackendFailedError, BackendUnavailableError
from detector.runtime import BackendOptions, Detector
from detector.runtime.backends import tensorrt_backend
from detector.runtime.backends.tensorrt_backend import TensorRTBackend
from detector.runtime.engines import BatchProfile, EngineSpec, build_lock, lock_path, resolve_engine
from export.tensorrt import build_engine

REPO = Path(__file__).resolve().parents[5]


def _spec(engine_dir: Path, precision: str = "fp32") -> EngineSpec:
    return EngineSpec(precision=precision, profile=BatchProfile(1, 2, 4), engine_dir=str(engine_dir))


def _options(engine_dir: Path, precision: str = "fp32", threads: int = 0) -> BackendOptions:
    return BackendOptions(
        device="cuda:0", engine=_spec(engine_dir, precision), engine_builder=build_engine, threads=threads
    )


def _batch(n: int = 1) -> np.ndarray:
    return np.full((n, 3, 128, 128), 0.45, np.float32)


def _owner_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("tensorrt")]


# --- D1: a GPU fault at inference ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "reason"),
    [(("cuda", "stream_synchronize"), "illegal memory access"), (("trt", "execute_false"), "returned False")],
)
def test_cuda_fault_at_inference_marks_the_backend_failed(
    standin: ModuleType, model_path: Path, tmp_path: Path, fault: tuple[str, str], reason: str
) -> None:
    backend = TensorRTBackend(model_path, _options(tmp_path))
    try:
        good = backend.run(_batch())
        module, name = fault
        getattr(standin, module).faults[name] = 1
        with pytest.raises(BackendFailedError, match=reason):
            backend.run(_batch())
        assert backend.failure is not None and reason in backend.failure
        # Out of service for good: a later call fails at once with the first reason, without touching CUDA.
        executed = len(standin.trt.stats["batches"])
        with pytest.raises(BackendFailedError, match=reason):
            backend.run(_batch())
        assert len(standin.trt.stats["batches"]) == executed
        assert isinstance(BackendFailedError("x"), BackendUnavailableError)
        assert good.shape[0] == 1
    finally:
        backend.close()  # must not raise, even with the stand-in's sticky CUDA error
    assert not _owner_threads()


def test_gpu_fault_turns_health_503_with_the_reason_and_asks_to_exit(
    standin: ModuleType, model_path: Path, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from detector.config import load_config

    config = load_config(
        [f"inference.model_path={model_path}", "inference.backend=tensorrt"], config_dir=REPO / "configs", environ={}
    )
    fatal: list[str] = []
    app = create_app(
        config, lambda path, backend: Detector.load(path, backend, _options(tmp_path)), on_fatal=fatal.append
    )
    image = (REPO / "ui" / "examples" / "shapes_1.jpg").read_bytes()
    with TestClient(app) as client:
        deadline = time.monotonic() + 30
        while client.get("/health").status_code != 200:
            assert time.monotonic() < deadline, client.get("/health").text
            time.sleep(0.05)
        assert client.post("/predict", files={"file": ("a.jpg", image, "image/jpeg")}).status_code == 200
        standin.cuda.faults["stream_synchronize"] = 1
        failed = client.post("/predict", files={"file": ("a.jpg", image, "image/jpeg")})
        assert failed.status_code == 503, failed.text
        health = client.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "failed" and "illegal memory access" in health.json()["detail"]
        assert client.post("/predict", files={"file": ("a.jpg", image, "image/jpeg")}).status_code == 503
    assert len(fatal) == 1 and "illegal memory access" in fatal[0]


def test_serve_exits_non_zero_after_a_backend_failure(monkeypatch: pytest.MonkeyPatch, model_path: Path) -> None:
    """`detector serve` stops uvicorn (gracefully) and raises, so the CLI exits with status 2."""
    import api.server as server_module
    from detector.config import load_config

    hooks: dict[str, Any] = {}

    def fake_create_app(*args: Any, on_fatal: Any = None, **kw: Any) -> object:
        hooks["on_fatal"] = on_fatal
        return object()

    class FakeServer:
        def __init__(self, config: Any) -> None:
            self.should_exit = False

        def run(self) -> None:
            hooks["on_fatal"]("the tensorrt backend failed at inference and cannot recover: boom")
            hooks["should_exit"] = self.should_exit

    monkeypatch.setattr(server_module, "create_app", fake_create_app)
    monkeypatch.setattr(server_module.uvicorn, "Config", lambda app, **kw: None)
    monkeypatch.setattr(server_module.uvicorn, "Server", FakeServer)
    config = load_config([f"inference.model_path={model_path}"], config_dir=REPO / "configs", environ={})
    with pytest.raises(BackendFailedError, match="boom"):
        server_module.serve(config)
    assert hooks["should_exit"] is True


# --- D2: both execution contexts busy at once ----------------------------------------------------------------------


def test_two_batches_in_flight_at_once(standin: ModuleType, model_path: Path, tmp_path: Path) -> None:
    backend = TensorRTBackend(model_path, _options(tmp_path))
    try:
        assert backend.slots == 2
        standin.trt.delays["execute"] = 0.2  # each batch keeps its slot's "GPU" busy for a while
        standin.trt.stats["max_in_flight"] = 0
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda _: backend.run(_batch()), range(4)))
        assert standin.trt.stats["max_in_flight"] == 2
    finally:
        backend.close()


def test_model_threads_follow_the_backend_slots_by_default(
    standin: ModuleType, model_path: Path, tmp_path: Path
) -> None:
    """Through the service with the shipped configuration: two requests become two batches on the GPU at once."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from detector.config import load_config

    config = load_config(
        [f"inference.model_path={model_path}", "inference.backend=tensorrt"], config_dir=REPO / "configs", environ={}
    )
    assert config.inference.server.workers == 0  # the default: follow the backend
    app = create_app(config, lambda path, backend: Detector.load(path, backend, _options(tmp_path)))
    image = (REPO / "ui" / "examples" / "shapes_1.jpg").read_bytes()
    with TestClient(app) as client:
        deadline = time.monotonic() + 30
        while client.get("/health").status_code != 200:
            assert time.monotonic() < deadline, client.get("/health").text
            time.sleep(0.05)
        assert client.app.state.service.batcher._threads.__len__() == 2  # type: ignore[attr-defined]
        standin.trt.delays["execute"] = 0.5
        standin.trt.stats["max_in_flight"] = 0

        def post() -> int:
            return client.post("/predict", files={"file": ("a.jpg", image, "image/jpeg")}).status_code

        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(post)
            deadline = time.monotonic() + 10
            while standin.trt.stats["in_flight"] == 0:  # the first batch is on the GPU; then the second arrives
                assert time.monotonic() < deadline
                time.sleep(0.01)
            second = pool.submit(post)
            assert (first.result(), second.result()) == (200, 200)
    # With one model thread (the old default) the second batch waited for the first: max_in_flight was 1.
    assert standin.trt.stats["max_in_flight"] == 2


# --- D3: INT8 engines with FP16 float parts ---------------------------------------------------------------------------


def test_int8_engine_float_parts_are_fp16_and_the_onnx_is_untouched(
    standin: ModuleType,
    model_path: Path,
    tmp_path: Path,
    dataset_dir: Path,
    qdq_onnx: Callable[[Path, Path, Path], tuple[Path, np.ndarray]],
) -> None:
    qdq, batch = qdq_onnx(model_path, dataset_dir, tmp_path / "model.int8.onnx")
    before = hashlib.sha256(qdq.read_bytes()).hexdigest()
    info = build_engine(qdq, _spec(tmp_path / "engines", precision="fp16"))
    assert info.precision == "int8"
    assert hashlib.sha256(qdq.read_bytes()).hexdigest() == before  # ONNX Runtime/OpenVINO keep running this file

    # What TensorRT was given: the stand-in's engine carries the parsed ONNX.
    data = info.path.read_bytes()
    header_end = data.index(b"\n") + 1 + 8
    size = int.from_bytes(data[header_end - 8 : header_end], "little")
    built = onnx.ModelProto.FromString(data[header_end + size :])
    source = onnx.load(str(qdq))
    onnx.checker.check_model(built, full_check=True)  # valid ONNX, as both TensorRT 10 and 11 parse it
    assert max(o.version for o in built.opset_import if o.domain in ("", "ai.onnx")) >= 19
    count = {op: sum(n.op_type == op for n in built.graph.node) for op in ("QuantizeLinear", "DequantizeLinear")}
    assert count == {op: sum(n.op_type == op for n in source.graph.node) for op in count}  # the INT8 regions kept
    pinned = {n.input[2] for n in built.graph.node if n.op_type == "Resize" and len(n.input) > 2}  # ONNX: float32
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    kinds = {i.data_type for i in built.graph.initializer if i.data_type in floats and i.name not in pinned}
    assert kinds == {onnx.TensorProto.FLOAT16}, "float initializers (weights of float layers, Q/DQ scales) in FP16"
    producers = {o: n.op_type for n in built.graph.node for o in n.output}
    convs = [n for n in built.graph.node if n.op_type == "Conv"]
    assert convs and all(producers.get(n.input[0]) == "DequantizeLinear" for n in convs), "no Cast between DQ and Conv"
    assert {v.type.tensor_type.elem_type for v in [*built.graph.input, *built.graph.output]} == {onnx.TensorProto.FLOAT}

    import onnxruntime as ort

    expected = ort.InferenceSession(str(qdq), providers=["CPUExecutionProvider"]).run(None, {"images": batch})[0]
    backend = TensorRTBackend(qdq, _options(tmp_path / "engines", precision="fp16"))
    try:
        out = backend.run(batch)
    finally:
        backend.close()
    assert backend.precision == "int8"
    np.testing.assert_allclose(out[:, 4:], expected[:, 4:], atol=0.05)  # class scores: FP16 rounding only


# --- D5: one build per cache entry ------------------------------------------------------------------------------------


def test_concurrent_builders_build_once_and_the_second_reuses(
    standin: ModuleType, model_path: Path, tmp_path: Path
) -> None:
    standin.trt.delays["build"] = 0.5  # long enough that both replicas ask while the first builds
    spec = _spec(tmp_path)
    start = threading.Barrier(2)

    def replica(device: int) -> str:
        start.wait()
        info, _ = resolve_engine(model_path, spec, 0, build=build_engine)
        return info.engine_sha256

    with ThreadPoolExecutor(2) as pool:
        shas = list(pool.map(replica, range(2)))
    assert standin.trt.stats["builds"] == 1 and standin.trt.stats["max_builds_running"] == 1
    assert shas[0] == shas[1]


HOLD_LOCK = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1], thread_local=False)
lock.acquire()
print("locked", flush=True)
time.sleep(600)
"""


def test_a_dead_builders_lock_does_not_block(standin: ModuleType, model_path: Path, tmp_path: Path) -> None:
    """A replica killed mid-build (OOM killer, node drain) leaves its lock file behind; the OS lock dies with it."""
    from detector.runtime.engines import current_target, engine_identity, engine_path

    key = engine_identity(model_path, _spec(tmp_path), current_target(0)).key
    lock = lock_path(engine_path(tmp_path, key))
    tmp_path.mkdir(exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        # Alive: the lock is real.
        with pytest.raises(BackendUnavailableError, match="waited"), build_lock(engine_path(tmp_path, key), 0.3):
            pass
    finally:
        holder.kill()
        holder.wait()
    started = time.monotonic()
    resolve_engine(model_path, _spec(tmp_path), 0, build=build_engine)
    assert time.monotonic() - started < 30 and standin.trt.stats["builds"] == 1


# --- D7: close() ------------------------------------------------------------------------------------------------------


def test_close_wakes_callers_waiting_for_a_slot_and_stops_every_owner(
    standin: ModuleType, model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tensorrt_backend, "CLOSE_TIMEOUT_S", 0.5)
    backend = TensorRTBackend(model_path, _options(tmp_path, threads=1))  # one slot: easy to hold
    leased = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with backend.lend_input((1, 3, 128, 128)):
            leased.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert leased.wait(10)
    waiter: list[BaseException] = []

    def wait_for_slot() -> None:
        try:
            backend.run(_batch())
        except BaseException as exc:
            waiter.append(exc)

    blocked = threading.Thread(target=wait_for_slot)
    blocked.start()
    time.sleep(0.1)
    started = time.monotonic()
    backend.close()  # the held slot never comes back within the timeout
    blocked.join(5)
    assert not blocked.is_alive(), "a caller waiting for a slot never woke after close()"
    assert waiter and isinstance(waiter[0], BackendUnavailableError)
    assert time.monotonic() - started < 5
    deadline = time.monotonic() + 5
    while _owner_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _owner_threads(), "close() left owner threads running"
    release.set()
    holder.join(5)
