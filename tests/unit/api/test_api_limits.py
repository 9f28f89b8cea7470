"""The body-size middleware at the ASGI level: refused from Content-Length without reading, cut off mid-stream."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from api.admission.limits import ENVELOPE_BYTES, BodySizeLimitMiddleware, ReadTimeoutMiddleware, body_limit
from api.admission.uploads import UploadGate
from api.errors import ServiceUnavailableError

LIMIT = 1000


async def echo_length(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that reads the whole body and answers its length."""
    body = await Request(scope, receive).body()
    await JSONResponse({"length": len(body)})(scope, receive, send)


def call(headers: dict[str, str], chunks: list[bytes], app: Any = echo_length) -> tuple[int, dict[str, Any], int]:
    """Run one request through the middleware; returns (status, json body, how many times receive was called)."""
    messages: list[Message] = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]
    calls = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal calls
        calls += 1
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(msg: Message) -> None:
        sent.append(msg)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "query_string": b"",
    }
    asyncio.run(BodySizeLimitMiddleware(app, max_image_bytes=LIMIT)(scope, receive, send))
    status = sent[0]["status"]
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body), calls


def test_content_length_over_the_limit_is_refused_without_reading() -> None:
    status, body, receive_calls = call({"content-length": str(LIMIT + 1), "content-type": "image/png"}, [b"x"])
    assert status == 413
    assert "larger than the limit of 1000 bytes" in body["detail"]
    assert receive_calls == 0


def test_streamed_body_is_cut_off_once_over_the_limit() -> None:
    chunks = [b"x" * 400] * 10  # 4000 bytes, no Content-Length
    status, body, receive_calls = call({"content-type": "image/png"}, chunks)
    assert status == 413
    assert "larger than the limit" in body["detail"]
    assert receive_calls == 3  # stopped at the chunk that passed 1000 bytes, the rest was never read


def test_bodies_within_the_limit_pass_untouched() -> None:
    status, body, _ = call({"content-length": str(LIMIT), "content-type": "image/png"}, [b"x" * 600, b"y" * 400])
    assert (status, body) == (200, {"length": LIMIT})
    status, body, _ = call({"content-type": "image/png"}, [b"x" * 600, b"y" * 400])  # chunked, exactly at the limit
    assert (status, body) == (200, {"length": LIMIT})


def test_limit_depends_on_the_body_type() -> None:
    assert body_limit(3000, "application/json") == 4000 + ENVELOPE_BYTES  # base64 is 4/3 larger
    assert body_limit(3000, "multipart/form-data; boundary=x") == 3000 + ENVELOPE_BYTES
    assert body_limit(3000, "image/png") == 3000
    status, _, _ = call({"content-length": str(LIMIT + 10), "content-type": "application/json"}, [b"x" * (LIMIT + 10)])
    assert status == 200


def test_bad_content_length_is_a_400() -> None:
    status, body, receive_calls = call({"content-length": "lots"}, [b""])
    assert status == 400 and "Content-Length" in body["detail"] and receive_calls == 0


@pytest.mark.parametrize("scope_type", ["websocket", "lifespan"])
def test_non_http_scopes_pass_through(scope_type: str) -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    asyncio.run(BodySizeLimitMiddleware(app, LIMIT)({"type": scope_type}, None, None))  # type: ignore[arg-type]
    assert seen == [scope_type]


# -- the read timeout and the upload bound (issue 13) -----------------------------------------------------------------


def run_slow(timeout_s: float, chunks: list[bytes], gap_s: float) -> tuple[int, dict[str, str], dict[str, Any]]:
    """A body arriving in `chunks` with `gap_s` between them, through ReadTimeoutMiddleware(timeout_s)."""
    sent: list[Message] = []

    async def main() -> None:
        queue = list(chunks)

        async def receive() -> Message:
            await asyncio.sleep(gap_s)
            body = queue.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(queue)}

        async def send(msg: Message) -> None:
            sent.append(msg)

        scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}
        await ReadTimeoutMiddleware(echo_length, timeout_s=timeout_s)(scope, receive, send)

    asyncio.run(main())
    headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], headers, json.loads(body)


def test_a_body_slower_than_the_read_timeout_is_408_and_closes() -> None:
    status, headers, body = run_slow(0.2, [b"a"] * 10, gap_s=0.05)  # 0.5 s of trickle against 0.2 s
    assert status == 408 and headers["connection"] == "close"
    assert "read timeout of 0.2 s" in body["detail"]


def test_a_body_within_the_read_timeout_passes() -> None:
    status, _, body = run_slow(2, [b"ab"] * 5, gap_s=0.01)
    assert status == 200 and body == {"length": 10}


def test_uploads_are_bounded_with_503_and_retry_after() -> None:
    gate = UploadGate(2)
    with gate.holding(), gate.holding():
        with pytest.raises(ServiceUnavailableError, match="2 uploads are in progress") as info, gate.holding():
            pass
        assert info.value.headers["Retry-After"]
    assert gate.active == 0
    with gate.holding():
        assert gate.active == 1
