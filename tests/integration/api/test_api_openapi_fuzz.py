"""Schemathesis fuzzes every operation from the OpenAPI schema against the real app: no 5xx, responses as documented.

Bounded (max_examples per operation) so the run takes seconds. The app's lifespan runs once (TestClient), and
schemathesis reaches the ready app through a wrapper that answers its own lifespan messages, so fuzzing never sees
the "loading" 503.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.types import ASGIApp, Receive, Scope, Send

KEY = "fuzz-key"


def started(app: ASGIApp) -> ASGIApp:
    """`app` for a caller that wants to run its lifespan again: acknowledge it without touching the real one."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    return wrapped


@pytest.fixture(scope="module")
def api_schema(make_config: Any, run_app: Any) -> Iterator[Any]:
    config = make_config(f"inference.server.admin_api_key={KEY}", "inference.server.max_upload_mb=1")
    with run_app(config) as client:
        yield schemathesis.openapi.from_asgi("/openapi.json", started(client.app))


OPERATIONS = [
    "GET /health",
    "GET /livez",
    "GET /readyz",
    "GET /model",
    "GET /model/shadow",
    "GET /metrics",
    "POST /predict",
    "POST /predict/annotated",
    "POST /predict/batch",
    "POST /predict/video",
    "POST /admin/reload",
]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_every_operation_is_fuzzed(api_schema: Any) -> None:
    found = {f"{op.ok().method.upper()} {op.ok().path}" for op in api_schema.get_all_operations()}
    assert found == set(OPERATIONS)


# schemathesis' pytest plugin (`from_fixture`) does not work with this pytest; its strategies do, driven by hypothesis.
@pytest.mark.parametrize("label", OPERATIONS)
def test_no_server_errors(api_schema: Any, label: str) -> None:
    method, path = label.split()
    operation = api_schema[path][method]

    @given(case=operation.as_strategy())
    @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    def fuzz(case: Any) -> None:
        # The key is sent so /admin/reload's body validation and loader errors are fuzzed too, not just the 401.
        case.call_and_validate(headers={"X-API-Key": KEY}, checks=CHECKS)

    fuzz()
