"""OpenTelemetry tracing (inference.tracing) through the real app and a real OTLP/HTTP exporter, received by a
loopback collector that decodes the protobuf: the caller's traceparent is the parent, each stage of a prediction
is a span whose duration is the one `timings_ms` reports, a client's mistake is traced without stage spans; off,
the SDK is never imported."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.integration.api.conftest import REPO, MakeConfig, RunApp

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
STAGES = ["read", "decode", "queue_wait", "preprocess", "inference", "postprocess"]


class _Collector(BaseHTTPRequestHandler):
    received: list[bytes]

    def do_POST(self) -> None:
        self.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[bytes]]]:
    """An OTLP/HTTP traces endpoint on loopback; the request bodies it received."""
    received: list[bytes] = []
    handler = type("Handler", (_Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", received
    finally:
        server.shutdown()


def _spans(bodies: list[bytes]) -> list[dict[str, Any]]:
    spans = []
    for body in bodies:
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"]
            for scope in resource.scope_spans:
                for s in scope.spans:
                    attrs = {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in s.attributes}
                    spans.append(
                        {
                            "name": s.name,
                            "trace": s.trace_id.hex(),
                            "id": s.span_id.hex(),
                            "parent": s.parent_span_id.hex(),
                            "start": s.start_time_unix_nano,
                            "end": s.end_time_unix_nano,
                            "kind": s.kind,
                            "attrs": attrs,
                            "service": service,
                        }
                    )
    return spans


def test_a_prediction_is_traced_stage_by_stage_under_the_callers_trace(
    make_config: MakeConfig, run_app: RunApp, dataset_dir: Path, collector: tuple[str, list[bytes]]
) -> None:
    endpoint, received = collector
    config = make_config("inference.tracing.enabled=true", f"inference.tracing.endpoint={endpoint}")
    image = sorted((dataset_dir / "images" / "test").glob("*"))[0].read_bytes()
    with run_app(config) as client:
        headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
        answer = client.post("/predict", files={"file": image}, headers=headers)
        assert answer.status_code == 200
        refused = client.post("/predict", content=b"not an image", headers={"Content-Type": "text/plain", **headers})
        assert refused.status_code == 415
    spans = _spans(received)  # the lifespan's shutdown flushed the batch
    assert {s["service"] for s in spans} == {"yolo-detector"}
    mine = [s for s in spans if s["trace"] == TRACE_ID]
    servers = [s for s in mine if s["kind"] == 2]  # SPAN_KIND_SERVER
    assert len(servers) == 2 and all(s["parent"] == PARENT_ID for s in servers)
    assert sorted(s["attrs"]["http.response.status_code"] for s in servers) == [200, 415]

    (predict,) = [s for s in mine if s["name"] == "detector.predict"]  # the 415 never reached a stage
    ancestors = {s["id"]: s["parent"] for s in mine}
    parent = predict["parent"]
    while parent in ancestors and parent not in {s["id"] for s in servers}:
        parent = ancestors[parent]
    ok_server = next(s for s in servers if s["attrs"]["http.response.status_code"] == 200)
    assert parent == ok_server["id"], "the stages hang under the request's server span"
    assert predict["attrs"]["detector.detections"] == len(answer.json()["detections"])
    assert predict["attrs"]["detector.batch_size"] == 1

    stages = sorted((s for s in mine if s["parent"] == predict["id"]), key=lambda s: s["start"])
    assert [s["name"] for s in stages] == [f"detector.{n}" for n in STAGES]
    timings = answer.json()["timings_ms"]
    at = predict["start"]
    for stage, name in zip(stages, STAGES, strict=True):
        assert stage["start"] == at, "each stage starts where the one before ended"
        assert stage["end"] - stage["start"] == int(timings[name] * 1e6)
        at = stage["end"]
    assert predict["end"] >= at and predict["end"] - predict["start"] == pytest.approx(timings["total"] * 1e6, abs=1e4)
    assert ok_server["start"] <= predict["start"] and predict["end"] <= ok_server["end"]


def test_off_nothing_is_traced_and_the_sdk_is_not_imported(tmp_path: Path, model_path: Path) -> None:
    """A fresh interpreter serves one request with the default configuration, then lists what it imported."""
    image = next((model_path.parent.parent / "data" / "v1" / "images" / "test").glob("*"))
    script = f"""
import json, sys
from fastapi.testclient import TestClient
from api.app import create_app
from detector.config import load_config
config = load_config(["inference.model_path={model_path}"], config_dir="{REPO / "configs"}", environ={{}})
with TestClient(create_app(config)) as client:
    while client.get("/health").status_code != 200:
        pass
    status = client.post("/predict", files={{"file": open("{image}", "rb").read()}}).status_code
print(json.dumps({{"status": status, "sdk": sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk"))}}))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "YOLO_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"status": 200, "sdk": []}
