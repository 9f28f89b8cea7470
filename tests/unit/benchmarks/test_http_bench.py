"""HTTP mode's accounting (bounded requests, non-2xx and exceptions counted) against an in-memory transport."""

from __future__ import annotations

import base64
import itertools
import json

import httpx
import pytest

from benchmarks.errors import BenchmarkInputError
from benchmarks.http_bench import HttpPlan, _request_kwargs, check_service, run_cell


def _client(handler: httpx.MockTransport) -> httpx.Client:
    return httpx.Client(transport=handler, base_url="http://svc")


def test_counts_successes_statuses_and_exceptions() -> None:
    counter = itertools.count()

    def handler(request: httpx.Request) -> httpx.Response:
        n = next(counter)
        if n % 5 == 3:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(503 if n % 5 == 4 else 200, json={})

    plan = HttpPlan(url="http://svc", concurrency=[2], inputs=["multipart"], requests=20, max_seconds=30)
    bodies = _request_kwargs("multipart", [b"\xff\xd8jpeg"])
    with _client(httpx.MockTransport(handler)) as client:
        cell = run_cell(client, "http://svc/predict", bodies, 2, plan)
    assert cell["sent"] == 20
    assert cell["ok"] == 12
    assert cell["non_2xx"] == {"503": 4}
    assert cell["exceptions"] == {"ConnectError": 4}
    assert cell["errors"] == 8
    assert cell["latency"]["n"] == 12 and cell["throughput_rps"] > 0
    assert cell["error"] is None


def test_all_failed_cell_is_an_error() -> None:
    plan = HttpPlan(url="http://svc", concurrency=[1], inputs=["json"], requests=3, max_seconds=30)
    transport = httpx.MockTransport(lambda request: httpx.Response(500))
    with _client(transport) as client:
        cell = run_cell(client, "http://svc/predict", _request_kwargs("json", [b"x"]), 1, plan)
    assert cell["ok"] == 0 and cell["latency"] is None
    assert "all 3 requests failed" in cell["error"]


def test_request_bodies_follow_the_service_contract() -> None:
    (multipart,) = _request_kwargs("multipart", [b"abc"])
    assert multipart["files"]["file"] == ("image.jpg", b"abc", "image/jpeg")
    (body,) = _request_kwargs("json", [b"abc"])
    assert base64.b64decode(body["json"]["image_base64"]) == b"abc"
    json.dumps(body["json"])  # JSON-serialisable as sent
    (raw,) = _request_kwargs("raw", [b"abc"])
    assert raw == {"content": b"abc", "headers": {"Content-Type": "image/jpeg"}}
    with pytest.raises(BenchmarkInputError):
        _request_kwargs("xml", [b"abc"])


def test_unreachable_service_is_an_input_error() -> None:
    with pytest.raises(BenchmarkInputError, match="cannot reach the service"):
        check_service("http://127.0.0.1:9", timeout_s=2)
