"""The bounded httptools protocol (api/admission/http_protocol.py), on a real uvicorn server on loopback."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from api.admission.http_protocol import bounded_protocol
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


# Issue 21: idle and slow connections cannot lock the server out.
HEAD_TIMEOUT_S = 2.0
MAX_CONNECTIONS = 24
PER_CLIENT = 6


@pytest.fixture(scope="module")
def guarded_port() -> Iterator[int]:
    port = free_port()
    protocol = bounded_protocol(LIMIT, HEAD_TIMEOUT_S, MAX_CONNECTIONS, PER_CLIENT)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=protocol, log_level="error")
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


def connect_from(source: str, port: int) -> socket.socket:
    """A connection to the server from `source` (any 127.x.y.z address reaches loopback on Linux)."""
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))


def read_all(s: socket.socket) -> bytes:
    answer = b""
    try:
        while chunk := s.recv(65536):
            answer += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return answer


def get(port: int, source: str = "127.0.0.1") -> bytes:
    with connect_from(source, port) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return read_all(s)


def test_a_trickled_head_cannot_extend_its_deadline(guarded_port: int) -> None:
    head = request(1000)
    started = time.monotonic()
    with connect_from("127.0.0.1", guarded_port) as s:
        s.settimeout(0.5)
        answer = b""
        for i in range(0, 200):  # one byte every 0.05 s: 10 s of trickle, if the server let it
            try:
                s.sendall(head[i : i + 1])
            except OSError:
                break
            try:
                if chunk := s.recv(65536):
                    answer += chunk
                    break
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            time.sleep(0.05)
        answer += read_all(s)
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert elapsed < HEAD_TIMEOUT_S + 1.5, elapsed


def test_a_silent_connection_is_closed_after_the_head_timeout(guarded_port: int) -> None:
    started = time.monotonic()
    with connect_from("127.0.0.1", guarded_port) as s:
        assert read_all(s) == b""  # closed, nothing said: it asked nothing
    assert HEAD_TIMEOUT_S - 0.2 < time.monotonic() - started < HEAD_TIMEOUT_S + 1.5


def test_one_address_gets_at_most_its_share_of_connections(guarded_port: int) -> None:
    held = [connect_from("127.0.0.2", guarded_port) for _ in range(PER_CLIENT)]
    try:
        # One more from that address that asks at once is served (a burst is not cut off with resets)...
        assert get(guarded_port, "127.0.0.2").startswith(b"HTTP/1.1 200")
        # ... but a silent one is closed after a short deadline (1 s), not the full head timeout.
        started = time.monotonic()
        with connect_from("127.0.0.2", guarded_port) as extra:
            assert read_all(extra) == b""
        assert time.monotonic() - started < HEAD_TIMEOUT_S
        assert get(guarded_port).startswith(b"HTTP/1.1 200")  # another address is served meanwhile
    finally:
        for s in held:
            s.close()
    time.sleep(0.2)
    assert get(guarded_port, "127.0.0.2").startswith(b"HTTP/1.1 200")  # its places came back


def test_idle_connections_do_not_shed_real_requests(guarded_port: int) -> None:
    # The server filled with idle connections from several addresses: a new request is still served (the
    # longest-idle connection makes room), where uvicorn's limit_concurrency answered every request 503.
    held = [connect_from(f"127.0.1.{k}", guarded_port) for k in range(1, 6) for _ in range(PER_CLIENT - 1)]
    try:
        assert len(held) > MAX_CONNECTIONS
        time.sleep(0.1)
        for _ in range(3):
            assert get(guarded_port).startswith(b"HTTP/1.1 200")
    finally:
        for s in held:
            s.close()
