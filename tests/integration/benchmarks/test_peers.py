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


def test_http_c1_our_work_in_process_and_the_bar_are_timed_in_the_same_interleaved_blocks(
    model_path: Path, sample_photos: list[Path], tmp_path: Path
) -> None:
    from benchmarks.peers import http_overhead, ours_from_jpeg, ultralytics_from_jpeg
    from benchmarks.runners import ULTRALYTICS_ONNX, Calls, DetectorRunner, UltralyticsRunner
    from tests.servers import serving

    order: list[str] = []

    def logged(side: str, calls: Calls) -> Calls:
        def end_to_end() -> float:
            order.append(side)
            return calls.end_to_end()

        return Calls(end_to_end, None)

    jpegs = [p.read_bytes() for p in sample_photos[:2]]
    ours = DetectorRunner("onnxruntime", model_path, 1)
    theirs = UltralyticsRunner(ULTRALYTICS_ONNX, model_path, 128, 1)
    try:
        local = [logged("local", ours_from_jpeg(ours, data)) for data in jpegs]
        bar = [logged("peer", ultralytics_from_jpeg(theirs, data)) for data in jpegs]
        with serving(model_path, tmp_path) as server:
            got = http_overhead(server.url, local, jpegs, rounds=3, block=2, peer=("the bar", bar))
    finally:
        ours.close()
        theirs.close()
    assert got["n"] == 6 and got["peer"] == "the bar"
    assert got["http_p50_ms"] > 0 and got["in_process_p50_ms"] > 0 and got["peer_p50_ms"] > 0
    assert got["overhead_ms"] == pytest.approx(got["http_p50_ms"] - got["in_process_p50_ms"], abs=0.011)
    assert got["http_raw_p50_ms"] > 0  # the JPEG as the body, in the same blocks
    assert got["overhead_raw_ms"] == pytest.approx(got["http_raw_p50_ms"] - got["in_process_p50_ms"], abs=0.011)
    assert got["http_lean_p50_ms"] > 0  # the same body from http.client, in the same blocks
    assert got["overhead_lean_ms"] == pytest.approx(got["http_lean_p50_ms"] - got["in_process_p50_ms"], abs=0.011)
    # the endpoint's own time (Server-Timing) and the rest of each multipart request's
    assert 0 < got["endpoint_p50_ms"] < got["http_p50_ms"] and got["outside_endpoint_p50_ms"] > 0
    warm_up = ["local"] * 4 + ["peer"] * 4  # each photo twice on each side
    assert order == warm_up + ["local", "local", "peer", "peer"] * 3  # each round: HTTP, then ours, then theirs
