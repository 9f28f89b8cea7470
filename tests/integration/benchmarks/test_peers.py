"""The peers benchmark's parts that run the trained quick model: the afternoon service it starts answers /predict,
and our side decodes JPEG bytes as the service does, then detects. Its photos, ratios and table, which need no
model, are in tests/unit/benchmarks/test_peers.py."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest


def test_afternoon_service_answers_predict(model_path: Path, sample_photos: list[Path], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    testclient = pytest.importorskip("fastapi.testclient")
    monkeypatch.setenv("AFTERNOON_MODEL", str(model_path))
    monkeypatch.setenv("AFTERNOON_IMGSZ", "128")
    sys.modules.pop("benchmarks.afternoon_service", None)
    app = importlib.import_module("benchmarks.afternoon_service").app
    with testclient.TestClient(app) as client:
        assert client.get("/health").json() == {"status": "ok"}
        response = client.post("/predict", files={"file": ("bus.jpg", sample_photos[0].read_bytes(), "image/jpeg")})
    assert response.status_code == 200
    assert isinstance(response.json()["detections"], list)


def test_ours_from_jpeg_decodes_as_the_service_does_then_detects(model_path: Path, sample_photos: list[Path]) -> None:
    from benchmarks.peers import ours_from_jpeg
    from benchmarks.runners import DetectorRunner

    runner = DetectorRunner("onnxruntime", model_path, 1)
    try:
        calls = ours_from_jpeg(runner, sample_photos[0].read_bytes())
        assert calls.backend_only is None
        assert calls.end_to_end() > 0  # the inference time measured inside the call, in ms
    finally:
        runner.close()
