"""`detector serve --model models:/yolo-detector@champion`: a real uvicorn process serving from a real local MLflow
registry (SQLite); the alias moves and /admin/reload picks the new version up. Also through the real server:
Server-Timing, and a video stream whose client goes away mid-stream (its temporary file is removed)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from tests.clips import confident_scene, write_moving_clip
from tests.conftest import REPO
from tests.servers import free_port, serving

NAME = "yolo-detector"
KEY = "e2e-admin-key"


@pytest.fixture(scope="module")
def registry(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A SQLite registry holding the test ONNX as versions 1 and 2 of `yolo-detector`, champion -> 1."""
    from mlflow import MlflowClient

    work = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("serving", artifact_location=(work / "artifacts").as_uri())
    client.create_registered_model(NAME)
    for _ in range(2):
        run = client.create_run(experiment)
        client.log_artifact(run.info.run_id, str(model_path), "model")
        client.create_model_version(NAME, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        client.set_terminated(run.info.run_id)
    client.set_registered_model_alias(NAME, "champion", "1")
    return uri, work


def overrides(uri: str, work: Path) -> list[str]:
    return [
        f"train.mlflow.tracking_uri={uri}",
        f"inference.registry_cache_dir={work / 'cache'}",
        f"inference.server.admin_api_key={KEY}",
        f"inference.server.video_tmp_dir={work / 'spool'}",
        "inference.backend=onnxruntime",
    ]


def test_serve_by_alias_then_reload_when_it_moves(
    registry: tuple[str, Path], model_path: Path, dataset_dir: Path
) -> None:
    from mlflow import MlflowClient

    uri, work = registry
    (work / "spool").mkdir(exist_ok=True)
    with serving(f"models:/{NAME}@champion", work, *overrides(uri, work)) as server:
        info = httpx.get(server.url + "/model").json()
        assert info["registry"]["name"] == NAME and info["registry"]["version"] == "1"
        assert info["registry"]["alias"] == "champion" and info["names"]["0"] == "circle"
        cached = work / "cache" / NAME / "1" / "model.onnx"
        assert cached.read_bytes() == model_path.read_bytes()

        scene, _ = confident_scene(model_path, dataset_dir)
        clip = write_moving_clip(scene, work / "clip.mp4", frames=120).read_bytes()
        r = httpx.post(server.url + "/predict", files={"file": ("x.png", b"x", "image/png")})
        assert r.status_code == 422 and "server-timing" not in r.headers  # errors carry no timings
        image = next((dataset_dir / "images" / "test").glob("*.jpg")).read_bytes()
        r = httpx.post(server.url + "/predict", files={"file": ("a.jpg", image, "image/jpeg")})
        stages = [e.split(";")[0].strip() for e in r.headers["server-timing"].split(",")]
        assert r.status_code == 200 and stages == list(r.json()["timings_ms"])

        # A client that leaves mid-stream: the server stops, removes the spooled clip and keeps serving.
        with (
            httpx.Client(timeout=30) as client,
            client.stream("POST", server.url + "/predict/video", files={"file": ("c.mp4", clip, "video/mp4")}) as s,
        ):
            assert s.status_code == 200
            first = json.loads(next(s.iter_lines()))
            assert first["frame"] == 0
        deadline = time.monotonic() + 10
        while list((work / "spool").iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list((work / "spool").iterdir()) == []
        while "the client went away" not in server.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        stopped = re.search(r"video stream stopped after (\d+) lines", server.log.read_text())
        assert stopped and int(stopped[1]) < 120, "the server kept decoding frames for a client that had left"
        assert httpx.get(server.url + "/health").status_code == 200

        MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias(NAME, "champion", "2")
        body = {"model_path": f"models:/{NAME}@champion"}
        r = httpx.post(server.url + "/admin/reload", json=body, headers={"X-API-Key": KEY}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["model"]["registry"]["version"] == "2"
        assert httpx.get(server.url + "/model").json()["registry"]["version"] == "2"
        assert (work / "cache" / NAME / "2" / "model.onnx").is_file()

        r = httpx.post(
            server.url + "/admin/reload", json={"model_path": f"models:/{NAME}@gone"}, headers={"X-API-Key": KEY}
        )
        assert r.status_code == 422 and "alias 'gone'" in r.json()["detail"] and "still serving" in r.json()["detail"]
        assert httpx.get(server.url + "/model").json()["registry"]["version"] == "2"


def test_missing_alias_or_unreachable_registry_fails_the_start(
    registry: tuple[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's own entry point, in this process (mlflow is already imported here: a subprocess would spend
    most of its time importing it again). The start fails before uvicorn binds anything."""
    from cli.main import main

    uri, work = registry
    monkeypatch.chdir(work)
    base = ["--config-dir", str(REPO / "configs"), "serve", "--port", str(free_port())]
    assert main([*base, "--model", f"models:/{NAME}@nope", *overrides(uri, work)]) == 2
    assert "alias 'nope' of model 'yolo-detector' not found" in capsys.readouterr().err
    dead = f"http://127.0.0.1:{free_port()}"
    assert main([*base, "--model", f"models:/{NAME}@champion", *overrides(dead, work)]) == 2
    assert f"cannot reach the registry at {dead}" in capsys.readouterr().err
    assert main([*base, "--model", "models:/no-alias-or-version", *overrides(uri, work)]) == 2
    assert "use models:/<name>@<alias>" in capsys.readouterr().err
