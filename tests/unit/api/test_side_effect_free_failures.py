"""Failures without side effects (issue 21): a registry lookup on a server without a registry creates no file and
returns at once; error bodies name no server paths."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from api.errors import error_response, scrub_paths
from detector.errors import ModelLoadError
from detector.registry import registry_resolver


@pytest.mark.parametrize("tracking_uri", ["sqlite:///mlflow.db", "mlruns", "file:./mlruns"])
def test_a_missing_local_registry_fails_fast_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tracking_uri: str
) -> None:
    monkeypatch.chdir(tmp_path)
    resolve = registry_resolver(tracking_uri, tmp_path / "cache")
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match="no MLflow registry here") as info:
        resolve("models:/yolo-detector@champion")
    assert time.monotonic() - started < 1  # before: 5 s, and a new mlflow.db (or mlruns/) in the working folder
    assert list(tmp_path.iterdir()) == []
    assert str(tmp_path) not in str(info.value)


def test_error_bodies_name_no_server_paths() -> None:
    body = error_response(422, "cannot load /srv/detector/models/model.onnx: not an ONNX file").body.decode()
    assert "/srv" not in body and "model.onnx" in body
    for keep in ("send image/jpeg or multipart/form-data", "registry at http://mlflow:5000/api", "a/b relative"):
        assert scrub_paths(keep) == keep
