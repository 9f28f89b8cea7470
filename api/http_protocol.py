"""uvicorn's httptools protocol with a bound on the request head (request line + headers).

Why not plain h11, which bounds the head itself (`h11_max_incomplete_event_size`): h11 parses in Python, and with
four clients uploading photos at once its parsing took enough of a 2-core machine's CPU to cost a quarter of the
throughput (`benchmarks/peers.py`, c=4: 36-47 req/s with h11 against 52-59 with httptools, same build). Why not
plain httptools: it buffers a head of any size (a 1 MB header was answered 200). So this answers 400 +
`Connection: close` to a head over `max_header_bytes`, as h11 does, checked twice: exactly, on the parsed request
line and headers; and on the raw bytes that arrive while a head is incomplete, so that one endless header line is
cut off after at most one socket read (uvloop: 256 KiB) past the limit, not buffered until it ends.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

TOO_LARGE = "Request line and headers are larger than the server's limit."


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    max_header_bytes = 16384  # set per server by `bounded_protocol`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # before the first request and after each complete one, bytes belong to a head
        self._raw_head_bytes = 0  # bytes received while the head is incomplete (may include some body bytes)
        self._head_bytes = 0  # parsed request line + header names and values
        self._too_large = False

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._raw_head_bytes += len(data)
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
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._raw_head_bytes, self._head_bytes = True, 0, 0


def bounded_protocol(max_header_bytes: int) -> type[asyncio.Protocol]:
    """A protocol class for `uvicorn.run(http=...)` refusing heads over `max_header_bytes`."""
    return type("BoundedHttpTools", (BoundedHttpToolsProtocol,), {"max_header_bytes": max_header_bytes})
