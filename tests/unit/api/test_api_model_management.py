"""Model management without a real model: loads serialized with reloads, status matching what serves, a failed
Detector.load releasing its backend, server faults at inference answered 5xx (never 4xx)."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from api.errors import ConflictError
from api.monitoring.metrics import Metrics
from api.service import Service
from detector import errors as e
from detector.config import Config, load_config
from detector.runtime.backends.base import TensorSpec
from tests.fakes import FakeDetector

REPO = Path(__file__).resolve().parents[3]


def fake(name: str, fail: Exception | None = None) -> FakeDetector:
    """A model that answers no boxes, versioned by its name; `fail` makes predict_batch raise it (a server fault)."""
    return FakeDetector(name, version=name, info={"input_size": [64, 64]}, fail=fail)


def config(tmp_path: Path, *overrides: str) -> Config:
    model = tmp_path / "models" / "initial.onnx"
    model.parent.mkdir(exist_ok=True)
    model.write_bytes(b"x")
    (tmp_path / "models" / "new.onnx").write_bytes(b"x")
    return load_config(
        [f"inference.model_path={model}", "inference.server.admin_api_key=k", *overrides],
        config_dir=REPO / "configs",
        environ={},
    )


def test_reload_waits_for_the_initial_load_and_status_matches_what_serves(tmp_path: Path) -> None:
    initial_started, release_initial = threading.Event(), threading.Event()

    def factory(path: str, backend: str) -> FakeDetector:
        if path.endswith("initial.onnx"):
            initial_started.set()
            release_initial.wait(5)
            raise e.ModelLoadError("initial model is broken")
        return fake(Path(path).stem)

    service = Service(config(tmp_path), factory, Metrics())
    loader = threading.Thread(target=service.load_initial)
    loader.start()
    assert initial_started.wait(5)
    # While the initial load runs, a reload cannot slip in (it would be replaced, or marked failed, afterwards).
    with pytest.raises(ConflictError, match="in progress"):
        service.reload("new.onnx", "auto")
    release_initial.set()
    loader.join()
    assert service.status == "failed" and not service.ready and service.slot.current is None
    old, new = service.reload("new.onnx", "auto")
    assert old is None and new["version"] == "new"
    assert service.status == "ok" and service.ready and service.error == ""
    assert service.slot.current is not None and service.slot.current.info["version"] == "new"
    service.close()


def test_a_late_initial_load_never_replaces_a_newer_model(tmp_path: Path) -> None:
    """The two loads are serialized: whichever order they run in, the slot ends with the one installed last and
    status "ok"; the replaced model is closed on the closer thread, not on the caller's."""
    loaded: list[FakeDetector] = []

    def factory(path: str, backend: str) -> FakeDetector:
        time.sleep(0.05)
        loaded.append(fake(Path(path).stem))
        return loaded[-1]

    service = Service(config(tmp_path), factory, Metrics())
    results: list[Any] = []

    def reload() -> None:
        for _ in range(50):
            try:
                results.append(service.reload("new.onnx", "auto"))
                return
            except ConflictError:
                time.sleep(0.01)

    threads = [threading.Thread(target=service.load_initial), threading.Thread(target=reload)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    service.slot.wait_closed()
    assert service.status == "ok" and results
    current = service.slot.current
    assert current is not None and current.detector is loaded[-1]
    assert [m.closed for m in loaded] == [True, False]
    assert loaded[0].closed_on is not None and loaded[0].closed_on.startswith("model-closer")
    service.close()
    assert loaded[-1].closed


@pytest.mark.parametrize(
    ("fault", "status", "words"),
    [
        (e.ModelLoadError("engine file vanished"), 503, "engine file vanished"),
        (e.BackendUnavailableError("CUDA error 700"), 503, "CUDA error 700"),
        (e.InvalidInputError("model output shape (1, 5) does not match"), 500, "output shape"),
        (AttributeError("'NoneType' object has no attribute 'run'"), 500, "AttributeError"),  # a closed backend
    ],
)
def test_server_faults_at_inference_are_5xx_with_a_clear_detail(
    tmp_path: Path, fault: Exception, status: int, words: str
) -> None:
    app = create_app(config(tmp_path), lambda path, backend: fake("m", fail=fault))
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(buf, "PNG")
    with TestClient(app) as client:
        deadline = time.monotonic() + 10
        while client.get("/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        r = client.post("/predict", files={"file": ("a.png", buf.getvalue(), "image/png")})
        assert r.status_code == status, r.text
        assert words in r.json()["detail"]
        if status == 503:
            assert r.headers["Retry-After"]
        assert "NoneType" not in r.json()["detail"]  # an unknown error's text stays in the log
        assert client.get("/health").status_code == 200


class _Backend:
    """A backend whose input disagrees with the model's metadata, so `Detector(...)` raises after creating it."""

    name = "fake"
    device_name = "cpu"
    thread_safe = True
    max_batch = None
    model_path = Path("m.onnx")

    def __init__(self) -> None:
        self.closed = False
        self.input_spec = TensorSpec("images", (1, 3, 320, 320), np.dtype(np.float32))

    def close(self) -> None:
        self.closed = True


def test_a_failed_detector_load_closes_the_backend_it_created(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from detector.runtime import detector as detector_module
    from detector.runtime.metadata import ModelMetadata

    created: list[_Backend] = []

    def create(name: str, path: Path, options: Any = None) -> _Backend:
        created.append(_Backend())
        return created[-1]

    meta = ModelMetadata(names={0: "a"}, imgsz=(640, 640))
    monkeypatch.setattr(detector_module.backends, "create", create)
    monkeypatch.setattr(detector_module, "_read_metadata", lambda path: meta)
    with pytest.raises(e.ModelLoadError, match="disagrees with its metadata"):
        detector_module.Detector.load(tmp_path / "m.onnx")
    assert len(created) == 1 and created[0].closed


def test_a_registry_model_is_the_loaded_detector_plus_where_in_the_registry_it_came_from(tmp_path: Path) -> None:
    from api.model.registry import registry_aware
    from detector.runtime.model_source import ResolvedModel

    loaded: list[tuple[str, FakeDetector]] = []

    def factory(path: str, backend: str) -> FakeDetector:
        loaded.append((path, fake("v3")))
        return loaded[-1][1]

    resolved = ResolvedModel("models:/det@champion", "det", "3", "champion", tmp_path / "m.onnx", run_id="r")
    model = registry_aware(factory, lambda uri: resolved)("models:/det@champion", "onnxruntime")
    ((path, served),) = loaded
    assert path == str(tmp_path / "m.onnx")
    assert model.describe() == {**served.describe(), "registry": resolved.describe()}
    assert model.max_batch is served.max_batch and len(model.predict_batch([np.zeros((4, 4, 3), np.uint8)])) == 1
    model.close()
    assert served.closed
    assert registry_aware(factory, None)("models/x.onnx", "onnxruntime") is loaded[-1][1]  # files: untouched
    with pytest.raises(e.ModelLoadError, match="no registry resolver"):
        registry_aware(factory, None)("models:/det@champion", "onnxruntime")


def test_kubernetes_probes_split_liveness_from_readiness(tmp_path: Path) -> None:
    """/livez: 200 whatever the model does (a restart would not fix a bad model file); /readyz: the /health answer."""
    release = threading.Event()

    def factory(path: str, backend: str) -> FakeDetector:
        release.wait(5)
        raise e.ModelLoadError(f"{path} is not a model")

    with TestClient(create_app(config(tmp_path), factory)) as client:
        assert client.get("/livez").json() == {"status": "alive"}
        loading = client.get("/readyz")
        assert loading.status_code == 503 and loading.json()["status"] == "loading"
        release.set()
        deadline = time.monotonic() + 10
        while (ready := client.get("/readyz")).json()["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert ready.status_code == 503 and ready.json() == client.get("/health").json()
        assert ready.json()["status"] == "failed" and "not a model" in ready.json()["detail"]
        assert str(tmp_path) not in ready.json()["detail"]  # no server paths in a public answer
        assert client.get("/livez").status_code == 200
