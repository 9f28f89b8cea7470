"""The bounded httptools protocol (api/http_protocol.py), on a real uvicorn server on loopback."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from api.http_protocol import bounded_protocol
from tests.servers import free_port

LIMIT = 2048


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers the number of body bytes it read."""
    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=bounded_protocol(LIMIT), log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def request(head_filler: int, body: bytes = b"") -> bytes:
    return (
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * head_filler + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


def exchange(port: int, payload: bytes, slowly: bool = False) -> bytes:
    """Send `payload` on a new connection (in 100-byte pieces if `slowly`); everything answered until close."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        pieces = [payload[i : i + 100] for i in range(0, len(payload), 100)] if slowly else [payload]
        try:
            for piece in pieces:
                s.sendall(piece)
                if slowly:
                    time.sleep(0.0002)
            s.shutdown(socket.SHUT_WR)
        except OSError:  # the server closed the connection while we were still sending
            pass
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
        return answer


def test_a_head_within_the_limit_is_served(port: int) -> None:
    assert exchange(port, request(1000, b"hello")).startswith(b"HTTP/1.1 200")


def test_a_head_over_the_limit_is_a_400_and_the_connection_closes(port: int) -> None:
    answer = exchange(port, request(LIMIT + 10))
    assert answer.startswith(b"HTTP/1.1 400")
    assert b"connection: close" in answer.lower()


def test_a_huge_head_sent_slowly_is_cut_off_before_it_ends(port: int) -> None:
    started = time.monotonic()
    answer = exchange(port, request(200_000), slowly=True)
    assert answer.startswith(b"HTTP/1.1 400")
    assert time.monotonic() - started < 5


def test_the_body_does_not_count_against_the_head_limit(port: int) -> None:
    answer = exchange(port, request(100, b"x" * 1_000_000))
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\n1000000")


def test_each_request_on_a_keep_alive_connection_gets_its_own_limit(port: int) -> None:
    # Three requests with 1.2 KB heads on one connection: over the limit together, each within it.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    sockets = set()
    for body in (b"a", b"bb", b"ccc"):
        connection.request("POST", "/", body=body, headers={"X-Filler": "a" * 1200})
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, str(len(body)).encode())
        sockets.add(id(connection.sock))
    connection.close()
    assert len(sockets) == 1  # the same connection throughout
