"""uvicorn's httptools protocol with bounds on the request head and on what idle or slow connections can hold.

Why not plain h11, which bounds the head itself (`h11_max_incomplete_event_size`): h11 parses in Python, and with
four clients uploading photos at once its parsing took enough of a 2-core machine's CPU to cost a quarter of the
throughput (`benchmarks/peers.py`, c=4: 36-47 req/s with h11 against 52-59 with httptools, same build). Why not
plain httptools: it buffers a head of any size (a 1 MB header was answered 200). So this answers 400 +
`Connection: close` to a head over `max_header_bytes`, as h11 does, checked twice: exactly, on the parsed request
line and headers; and on the raw bytes that arrive while a head is incomplete, so that one endless header line is
cut off after at most one socket read (uvloop: 256 KiB) past the limit, not buffered until it ends.

And against lockout by connections that never become requests (issue 21: one client holding 1,023 silent sockets
made the whole service answer 503, `/health` included):
- A request head must be complete within `head_timeout_s` of the connection opening (or of its first byte, after a
  keep-alive pause). The deadline is fixed when it is armed: trickling bytes does not extend it. Past it the
  connection gets 408 (or, if it sent nothing, is just closed).
- uvicorn's `limit_concurrency` counts open connections, idle ones included, and answers 503 to real requests when
  they reach it. Here only requests in progress count towards that 503 (`max_connections`); open connections are
  bounded separately: when a new one would pass `max_connections`, the longest-idle connection (no request in
  progress) is closed to make room, and only when every connection is busy is the new one refused.
- At most `max_connections_per_client` idle connections from one address (0: no cap; set 0 behind a reverse proxy,
  where every client has the proxy's address). A connection beyond it must send its request head within 1 s
  (instead of `head_timeout_s`) and is the first closed to make room; one that does is served as any other (a
  burst of 256 uploads from one address is bounded by `max_uploads` and `queue_size`, not cut off with resets).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, ClassVar

from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

TOO_LARGE = "Request line and headers are larger than the server's limit."
HEAD_TIMEOUT = "The request line and headers did not arrive within the server's deadline."
SERVER_FULL = "The server has no room for another connection; retry later."
OVER_CAP_HEAD_TIMEOUT_S = 1.0  # the head deadline of a connection over its address's share
CLOSE_EXTENSION = "detector.connection"  # scope["extensions"][CLOSE_EXTENSION]["close"](): drop this connection

log = logging.getLogger("api.connections")


def _plain_response(status: str, msg: str, extra: bytes = b"") -> bytes:
    body = msg.encode("ascii")
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {len(body)}\r\n".encode()
        + extra
        + b"connection: close\r\n\r\n"
        + body
    )


class _RateLimitedLog:
    """A warning at most every `every_s` seconds, with the count of events since the last one (a flood of refused
    connections must not become a flood of log lines)."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self.last = 0.0
        self.count = 0

    def warn(self, what: str) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= self.every_s:
            log.warning("%s (%d time(s) since the last such message)", what, self.count)
            self.last, self.count = now, 0


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    # Set per server by `bounded_protocol` (a subclass per server, so the per-address counts are not shared).
    max_header_bytes = 16384
    head_timeout_s = 10.0
    max_connections = 1024
    max_connections_per_client = 128
    per_client: ClassVar[dict[str, int]] = {}
    refusals: ClassVar[_RateLimitedLog] = _RateLimitedLog()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit_concurrency = None  # shed on requests in progress only (on_headers_complete), not idle sockets
        self._in_head = True  # before the first request and after each complete one, bytes belong to a head
        self._raw_head_bytes = 0  # bytes received while the head is incomplete (may include some body bytes)
        self._head_bytes = 0  # parsed request line + header names and values
        self._too_large = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._peer: str | None = None  # counted in `per_client`
        self._idle_since = 0.0
        self._over_cap = False  # opened while its address held max_connections_per_client

    # Connections

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._idle_since = self.loop.time()
        peer = self.client[0] if self.client else None
        if self.max_connections_per_client and peer is not None:
            held = self.per_client.get(peer, 0)
            self.per_client[peer] = held + 1
            self._peer = peer
            if held >= self.max_connections_per_client:
                # Over its address's share: a client that sends its request at once is served as any other (its
                # body and its inference are bounded by max_uploads and queue_size); one that holds the socket
                # idle loses it after 1 s instead of head_timeout_s, and is the first closed to make room.
                self.refusals.warn(f"{peer} holds {held} connections (max_connections_per_client): short deadline")
                self._over_cap = True
        if len(self.connections) > self.max_connections and not self._evict_idlest():
            self.refusals.warn(f"refused a connection: {len(self.connections) - 1} open, all busy (max_connections)")
            self._refuse(SERVER_FULL)
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._peer is not None:
            left = self.per_client.get(self._peer, 1) - 1
            if left > 0:
                self.per_client[self._peer] = left
            else:
                self.per_client.pop(self._peer, None)
            self._peer = None
        super().connection_lost(exc)

    def _refuse(self, msg: str) -> None:
        self.transport.write(_plain_response("503 Service Unavailable", msg, b"retry-after: 1\r\n"))
        self.transport.close()

    def _is_idle(self) -> bool:
        """No request in progress: waiting for a head (or between requests)."""
        return self._in_head and (self.cycle is None or self.cycle.response_complete) and not self.pipeline

    def _evict_idlest(self) -> bool:
        """Close the connection idle for longest (not this one) to make room; False when all are busy."""
        idlest: BoundedHttpToolsProtocol | None = None
        for other in self.connections:
            if other is self or not isinstance(other, BoundedHttpToolsProtocol) or not other._is_idle():
                continue
            if other.transport.is_closing():
                continue
            if idlest is None or (not other._over_cap, other._idle_since) < (not idlest._over_cap, idlest._idle_since):
                idlest = other
        if idlest is None:
            return False
        self.refusals.warn("closed the longest-idle connection to make room for a new one (max_connections)")
        idlest.transport.close()
        return True

    # The head deadline

    def _arm_head_timer(self) -> None:
        if self._head_timer is None and self.head_timeout_s > 0:
            timeout = min(self.head_timeout_s, OVER_CAP_HEAD_TIMEOUT_S) if self._over_cap else self.head_timeout_s
            self._head_timer = self.loop.call_later(timeout, self._head_deadline)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_deadline(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._in_head:
            return
        if not self._is_idle():  # a pipelined head behind a response in progress: judge it once that is done
            self._arm_head_timer()
            return
        if self._raw_head_bytes:
            self.refusals.warn(f"closed a connection whose request head took over {self.head_timeout_s:g} s")
            self.transport.write(_plain_response("408 Request Timeout", HEAD_TIMEOUT))
        self.transport.close()

    # Bytes and parser callbacks

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._raw_head_bytes += len(data)
            self._arm_head_timer()  # no-op when armed: a deadline trickling bytes cannot move
        super().data_received(data)
        if self._in_head and self._raw_head_bytes > self.max_header_bytes and not self.transport.is_closing():
            self._too_large = True
            self.send_400_response(TOO_LARGE)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_header_bytes:
            self._too_large = True
            # Raised inside httptools' callback: uvicorn catches the parser error and answers 400 (our text below).
            raise ValueError(TOO_LARGE)

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self.logger.warning("refused a request whose head passed %d bytes", self.max_header_bytes)
            msg = TOO_LARGE
        super().send_400_response(msg)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        # For an app that must give up on a client (a stalled reader of a stream): drop the connection, so that
        # uvicorn sees a disconnect rather than an unfinished response (which it logs as an error).
        self.scope["extensions"] = {**self.scope.get("extensions", {}), CLOSE_EXTENSION: {"close": self._abort}}
        if len(self.tasks) >= self.max_connections:  # requests in progress, not open sockets
            app, self.app = self.app, service_unavailable
            try:
                self.logger.warning("%d requests in progress (max_connections): answered 503", len(self.tasks))
                super().on_headers_complete()
            finally:
                self.app = app
            return
        super().on_headers_complete()

    def _abort(self) -> None:
        if not self.transport.is_closing():
            self.transport.abort()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._raw_head_bytes, self._head_bytes = True, 0, 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._idle_since = self.loop.time()
        if self._raw_head_bytes:  # part of the next head arrived while this response was sent: its clock runs
            self._arm_head_timer()


def bounded_protocol(
    max_header_bytes: int,
    head_timeout_s: float = 10.0,
    max_connections: int = 1024,
    max_connections_per_client: int = 128,
) -> type[asyncio.Protocol]:
    """A protocol class for `uvicorn.run(http=...)` with these bounds (see the module docstring)."""
    return type(
        "BoundedHttpTools",
        (BoundedHttpToolsProtocol,),
        {
            "max_header_bytes": max_header_bytes,
            "head_timeout_s": head_timeout_s,
            "max_connections": max_connections,
            "max_connections_per_client": max_connections_per_client,
            "per_client": {},
            "refusals": _RateLimitedLog(),
        },
    )
