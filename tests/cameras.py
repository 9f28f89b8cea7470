"""Live sources on loopback for the tests of `detector predict URL`: an IP camera's HTTP MJPEG stream, a camera's
MPEG-TS over TCP, and plain files over HTTP (a playlist, a clip). Each runs on a thread of its own, paced like a
camera, and stops when its `with` ends."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

BOUNDARY = b"frame"


def mjpeg_packets(clip: Path) -> list[bytes]:
    """The JPEG of every frame of an MJPEG clip (an AVI), as stored: what a camera sends, byte for byte."""
    import av

    with av.open(str(clip)) as container:
        return [bytes(p) for p in container.demux(container.streams.video[0]) if p.size]


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    stop: threading.Event
    routes: dict[str, object]


@contextlib.contextmanager
def _http(routes: dict[str, object]) -> Iterator[str]:
    """A loopback HTTP server for `routes` (path -> bytes, or a callable writing the body); yields its base URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            if isinstance(route, bytes):
                self.send_response(200)
                self.send_header("Content-Length", str(len(route)))
                self.end_headers()
                self.wfile.write(route)
                return
            with contextlib.suppress(OSError):  # the reader left
                route(self)  # type: ignore[operator]

        def log_message(self, *args: object) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    server.stop = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def mjpeg_camera(
    jpegs: Sequence[bytes], fps: float, frames: int = 0, then: str = "close", stop: threading.Event | None = None
) -> Iterator[str]:
    """An IP camera: `multipart/x-mixed-replace` JPEG parts at `fps`, `jpegs` over and over, `frames` in all (0: until
    the `with` ends), then `then`: "close" the connection, or "stall" (keep it open, sending nothing). Yields the
    stream's URL. Frame i is `jpegs[i % len(jpegs)]`."""
    done = stop or threading.Event()

    def send(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
        handler.end_headers()
        start = time.monotonic()
        i = 0
        while (frames == 0 or i < frames) and not done.is_set():
            jpeg = jpegs[i % len(jpegs)]
            head = b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % (BOUNDARY, len(jpeg))
            handler.wfile.write(head + jpeg + b"\r\n")
            handler.wfile.flush()
            i += 1
            time.sleep(max(0.0, start + i / fps - time.monotonic()))
        if then == "stall":
            done.wait(60)

    with _http({"/video.mjpg": send}) as base:
        try:
            yield f"{base}/video.mjpg"
        finally:
            done.set()


@contextlib.contextmanager
def http_files(files: dict[str, bytes]) -> Iterator[str]:
    """Files served over loopback HTTP (`files`: path -> bytes); yields the base URL."""
    with _http(dict(files)) as base:
        yield base


@contextlib.contextmanager
def mpegts_camera(frames: Sequence[np.ndarray], fps: float) -> Iterator[str]:
    """A camera sending MPEG-TS (MPEG-4 Part 2) over TCP to the first who connects, `frames` (RGB, all one size) at
    `fps`, then closing the connection: the stream's end. Yields `tcp://127.0.0.1:<port>`."""
    import av

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    done = threading.Event()

    def run() -> None:
        listener.settimeout(30)
        with contextlib.suppress(OSError), listener.accept()[0] as conn:

            class Sink:
                def write(self, data: bytes) -> int:
                    conn.sendall(data)
                    return len(data)

            out = av.open(Sink(), "w", format="mpegts")
            stream = out.add_stream("mpeg4", rate=round(fps))
            stream.height, stream.width = frames[0].shape[:2]
            stream.pix_fmt = "yuv420p"
            start = time.monotonic()
            for i, rgb in enumerate(frames):
                if done.is_set():
                    break
                for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    out.mux(packet)
                time.sleep(max(0.0, start + (i + 1) / fps - time.monotonic()))
            for packet in stream.encode():
                out.mux(packet)
            out.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{port}"
    finally:
        done.set()
        listener.close()
        thread.join(timeout=10)
