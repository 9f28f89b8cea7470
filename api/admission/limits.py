"""Request-body size limits as a pure ASGI middleware.

It runs before any body is read: a `Content-Length` over the limit is refused at once (the body is never read);
without one (chunked uploads) the bytes are counted as they stream and the request is cut off with 413 as soon as
the limit is passed. Working at the ASGI level (not in a route) is what makes both guarantees hold for every route
and every body parser.

The limit depends on the body type so that the *image* limit (`max_upload_mb`) is the same whichever way it is sent:
base64 in JSON is 4/3 larger, and multipart adds boundaries and part headers. The exact image-byte limit is checked
again by the predict route once the image bytes are extracted.
"""

from __future__ import annotations

import asyncio
import math

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.admission.bodies import media_type
from api.errors import error_response
from api.middleware import HttpMiddleware

ENVELOPE_BYTES = 64 * 1024  # multipart boundaries, part headers, JSON punctuation, a data-URL prefix


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit.

    An HTTPException on purpose: FastAPI's own body parsing re-raises those (it turns any other exception into a
    400), so the app's exception handler renders the 413. The middleware below catches it as a fallback.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(413, detail, {"Connection": "close"})


def body_limit(max_image_bytes: int, content_type: str) -> int:
    """Most body bytes accepted for a request carrying an image of at most `max_image_bytes`."""
    ctype = media_type(content_type)
    if ctype == "application/json" or ctype.endswith("+json"):
        return math.ceil(max_image_bytes * 4 / 3) + ENVELOPE_BYTES
    if ctype == "multipart/form-data":
        return max_image_bytes + ENVELOPE_BYTES
    return max_image_bytes


class BodySizeLimitMiddleware(HttpMiddleware):
    def __init__(self, app: ASGIApp, max_image_bytes: int) -> None:
        super().__init__(app)
        self.max_image_bytes = max_image_bytes

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        limit = body_limit(self.max_image_bytes, headers.get(b"content-type", b"").decode("latin-1"))
        message = (
            f"request body is larger than the limit of {limit} bytes (an image or clip may have "
            f"{self.max_image_bytes} bytes: inference.server.max_upload_mb)"
        )
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                await error_response(400, "Content-Length header is not a number")(scope, receive, send)
                return
            if too_big:
                # Refused before reading: `receive` is never called for this request. The client may still be
                # sending; uvicorn closes the connection after the response instead of reading the rest.
                await error_response(413, message, {"Connection": "close"})(scope, receive, send)
                return

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(message)
            return msg

        await _refuse_on(BodyTooLarge, 413, message, self.app, scope, counting_receive, receive, send)


class BodyReadTimeout(HTTPException):
    """Raised from `receive` when the body has not fully arrived by the deadline (an HTTPException for the same
    reason as BodyTooLarge). `Connection: close` makes the server drop the connection after the 408."""

    def __init__(self, detail: str) -> None:
        super().__init__(408, detail, {"Connection": "close"})


class ReadTimeoutMiddleware(HttpMiddleware):
    """The whole request body must arrive within `timeout_s` of the request's headers.

    Without it a client sending one byte every half second holds its connection, a task and its buffers for as
    long as it likes. Only reads of the body are timed: once the body is complete, `receive` (which then only
    reports a disconnect) passes through untouched.
    """

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        super().__init__(app)
        self.timeout_s = timeout_s

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        body_done = False
        message = f"the request body did not arrive within the read timeout of {self.timeout_s:g} s"

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            if deadline <= loop.time():
                raise BodyReadTimeout(message)
            try:
                # asyncio.timeout, not wait_for: no extra task per chunk (wait_for cost ~80 ms a request under load).
                async with asyncio.timeout_at(deadline):
                    msg = await receive()
            except TimeoutError:
                raise BodyReadTimeout(message) from None
            if msg["type"] != "http.request" or not msg.get("more_body", False):
                body_done = True
            return msg

        await _refuse_on(BodyReadTimeout, 408, message, self.app, scope, timed_receive, receive, send)


async def _refuse_on(
    error: type[HTTPException],
    status: int,
    message: str,
    app: ASGIApp,
    scope: Scope,
    guarded_receive: Receive,
    receive: Receive,
    send: Send,
) -> None:
    """Run `app` reading the body through `guarded_receive`; when that raises `error` before the app has started
    its response, answer `status` with `message` and `Connection: close` (the client may still be sending). Once a
    response has started it cannot be replaced: the error then just ends the request."""
    started = False

    async def tracking_send(msg: Message) -> None:
        nonlocal started
        if msg["type"] == "http.response.start":
            started = True
        await send(msg)

    try:
        await app(scope, guarded_receive, tracking_send)
    except error:
        if not started:
            await error_response(status, message, {"Connection": "close"})(scope, receive, send)
