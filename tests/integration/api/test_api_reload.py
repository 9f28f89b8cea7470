"""POST /admin/reload: swap models while requests stream, keep serving on failure, guard with the API key."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from fastapi.testclient import TestClient

from api.model.slot import DetectorLike
from api.service import default_detector_factory
from detector.runtime import Detections
from tests.fakes import PassThrough

KEY = "s3cret-test-key"


class Tracked(PassThrough):
    """Records which model file served each call and when it was closed."""

    def __init__(self, inner: DetectorLike, path: str, log: list[str]) -> None:
        super().__init__(inner)
        self.path, self.log = path, log
        self.closed = False

    def predict_batch(self, images: Sequence[npt.NDArray[np.uint8]], *args: Any, **kwargs: Any) -> list[Detections]:
        assert not self.closed, "a batch ran on a closed model"
        self.log.append(self.path)
        return super().predict_batch(images, *args, **kwargs)

    def close(self) -> None:
        assert not self.closed, "closed twice"
        self.closed = True
        self.log.append(f"closed {self.path}")
        super().close()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The only folder /admin/reload loads from (inference.server.model_dir)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def admin(make_config: Any, run_app: Any, models_dir: Path) -> Iterator[tuple[TestClient, list[str]]]:
    config = make_config(f"inference.server.admin_api_key={KEY}", f"inference.server.model_dir={models_dir}")
    real = default_detector_factory(config)
    log: list[str] = []
    with run_app(config, lambda path, backend: Tracked(real(path, backend), path, log)) as client:
        yield client, log


def reload(client: TestClient, body: dict[str, Any], key: str | None = KEY) -> Any:
    return client.post("/admin/reload", json=body, headers={"X-API-Key": key} if key is not None else {})


def test_swap_while_requests_stream(
    admin: tuple[TestClient, list[str]], model_path: Path, models_dir: Path, dataset_dir: Path
) -> None:
    client, log = admin
    copy = models_dir / "model-v2.onnx"
    shutil.copy(model_path, copy)
    images = [p.read_bytes() for p in sorted((dataset_dir / "images" / "val").glob("*.jpg"))[:8]]
    statuses: list[int] = []
    stop = threading.Event()

    def stream() -> None:
        i = 0
        while not stop.is_set() or i < 20:
            r = client.post("/predict", files={"file": ("a.jpg", images[i % len(images)], "image/jpeg")})
            statuses.append(r.status_code)
            i += 1

    workers = [threading.Thread(target=stream) for _ in range(4)]
    for w in workers:
        w.start()
    r = reload(client, {"model_path": str(copy), "backend": "onnxruntime"})
    stop.set()
    for w in workers:
        w.join()

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "reloaded"
    assert body["model"]["backend"] == "onnxruntime"
    assert body["previous_version"] == body["model"]["version"]  # same weights, new file
    assert statuses and set(statuses) == {200}, statuses
    # The old model served until the swap, was closed once after its last batch, and the new one took over.
    closed_at = log.index(f"closed {model_path}")
    assert str(model_path) in log[:closed_at]
    assert all(entry == str(copy) for entry in log[closed_at + 1 :])
    assert client.get("/model").json()["backend"] == "onnxruntime"
    r = client.post("/predict", files={"file": ("a.jpg", images[0], "image/jpeg")})
    assert r.status_code == 200 and log[-1] == str(copy)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model_path": "missing.onnx"}, "model file not found"),
        ({"model_path": "__CORRUPT__"}, "not a readable ONNX file"),
    ],
)
def test_failed_reload_keeps_the_old_model(
    admin: tuple[TestClient, list[str]], models_dir: Path, dataset_dir: Path, body: dict[str, Any], message: str
) -> None:
    client, _ = admin
    if body["model_path"] == "__CORRUPT__":
        corrupt = models_dir / "corrupt.onnx"
        corrupt.write_bytes(b"this is not a protobuf" * 10)
        body = {"model_path": str(corrupt)}
    before = client.get("/model").json()
    r = reload(client, body)
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]
    assert f"still serving version {before['version']}" in r.json()["detail"]
    assert client.get("/health").status_code == 200
    assert client.get("/model").json() == before
    image = next((dataset_dir / "images" / "val").glob("*.jpg")).read_bytes()
    assert client.post("/predict", files={"file": ("a.jpg", image, "image/jpeg")}).status_code == 200


@pytest.mark.parametrize(
    ("key", "body", "status", "message"),
    [
        (None, {"model_path": "x.onnx"}, 401, "X-API-Key"),
        ("wrong", {"model_path": "x.onnx"}, 401, "X-API-Key"),
        ("", {"model_path": "x.onnx"}, 401, "X-API-Key"),
        (KEY, {"model_path": "x.onnx", "backend": "cuda-magic"}, 422, "backend"),
        (KEY, {"path": "x.onnx"}, 422, "model_path"),
    ],
)
def test_reload_auth_and_validation(
    admin: tuple[TestClient, list[str]], key: str | None, body: dict[str, Any], status: int, message: str
) -> None:
    client, _ = admin
    r = reload(client, body, key)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]


def test_admin_is_disabled_without_a_key(client: TestClient) -> None:
    r = reload(client, {"model_path": "x.onnx"})
    assert r.status_code == 404
    assert "admin_api_key" in r.json()["detail"]


def test_reload_loads_only_model_files_inside_the_model_directory(
    admin: tuple[TestClient, list[str]], models_dir: Path, tmp_path: Path
) -> None:
    client, _ = admin
    outside = tmp_path / "model.onnx"
    outside.write_bytes(b"x")
    (models_dir / "escape.onnx").symlink_to(outside)
    # Existing and missing files outside get the same answer: the endpoint cannot probe the filesystem.
    answers = [
        reload(client, {"model_path": p})
        for p in (str(outside), str(tmp_path / "absent.onnx"), "../x.onnx", "escape.onnx", "/etc/passwd")
    ]
    assert [r.status_code for r in answers] == [422] * 5, [r.text for r in answers]
    assert len({r.json()["detail"] for r in answers}) == 1
    (models_dir / "notes.txt").write_text("hi")
    r = reload(client, {"model_path": "notes.txt"})
    assert r.status_code == 415 and ".onnx" in r.json()["detail"]
    assert client.get("/health").status_code == 200
