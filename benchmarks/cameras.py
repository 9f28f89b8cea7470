"""Cameras on loopback, for `benchmarks/live.py` and the tests of `detector predict URL`: an IP camera's HTTP MJPEG
stream (`MjpegCamera`) and a camera sending MPEG-TS over TCP (`TsCamera`, its bytes from `ts_chunks`). Each sends
at a camera's pace on threads of its own, notes when it sent each frame, and stops at `close()` (or its `with`)."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

import numpy as np


class MjpegCamera:
    """`multipart/x-mixed-replace` JPEG parts at `fps` to each client from frame 0: `jpegs` over and over, `frames`
    in all (None: each JPEG once; 0: until closed), then `then`: "close" the connection (an HTTP MJPEG stream has no
    end mark) or "stall" (keep it open, sending nothing). With `once`, after one client got every frame the next
    ones get a 503 (Ultralytics' loader reconnects at a stream's end). `sent`: when each frame went, on the
    connection that got the most; `url`: the stream's."""

    def __init__(
        self, jpegs: list[bytes], fps: float, frames: int | None = None, then: str = "close", once: bool = False
    ) -> None:
        self.connections: list[list[float]] = []
        self._done = threading.Event()
        finished = threading.Event()
        total = len(jpegs) if frames is None else frames
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if once and finished.is_set():
                    self.send_error(503)
                    return
                sent: list[float] = []
                camera.connections.append(sent)
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                start = time.monotonic()
                with contextlib.suppress(OSError):  # the client left
                    i = 0
                    while (total == 0 or i < total) and not camera._done.is_set():
                        time.sleep(max(0.0, start + i / fps - time.monotonic()))
                        jpeg = jpegs[i % len(jpegs)]
                        sent.append(time.time())
                        head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                        self.wfile.write(head + jpeg + b"\r\n")
                        i += 1
                    finished.set()
                    if then == "stall":
                        camera._done.wait(60)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/video.mjpg"

    @property
    def sent(self) -> list[float]:
        return max(self.connections, key=len, default=[])

    def close(self) -> None:
        self._done.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> MjpegCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ts_chunks(frames: Iterable[np.ndarray], fps: float, codec: str = "libx264") -> list[bytes]:
    """BGR frames (all one size) encoded with `codec` in MPEG-TS, one chunk of bytes per frame, each what a camera
    sends for that frame. libx264 runs `veryfast` with `zerolatency` (no B-frames, each frame's bytes at once, as
    cameras send) and a key frame a second."""
    import av

    written = bytearray()

    class Sink:
        def write(self, data: bytes) -> int:
            written.extend(data)
            return len(data)

    chunks: list[bytes] = []
    out = av.open(Sink(), "w", format="mpegts", container_options={"flush_packets": "1"})
    try:
        options = {"preset": "veryfast", "tune": "zerolatency"} if codec == "libx264" else {}
        stream: Any = None
        for frame in frames:
            if stream is None:
                stream = out.add_stream(codec, rate=round(fps), options=options)
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.codec_context.gop_size = round(fps)
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")):
                out.mux(packet)
            chunks.append(bytes(written))
            written.clear()
        if stream is not None:
            for packet in stream.encode():
                out.mux(packet)
    finally:
        out.close()
    if chunks:
        chunks[-1] += bytes(written)
    return chunks


class TsCamera:
    """MPEG-TS over TCP: chunk i (`ts_chunks`) at i/`fps` to the first client, then the connection closed (the
    stream's end); later connections are closed at once. `sent`: when each chunk went; `url`: tcp://..."""

    def __init__(self, chunks: list[bytes], fps: float) -> None:
        self.sent: list[float] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"tcp://127.0.0.1:{self._listener.getsockname()[1]}"

        def serve() -> None:
            with contextlib.suppress(OSError):
                conn, _ = self._listener.accept()
                with conn:
                    threading.Thread(target=refuse_the_rest, daemon=True).start()
                    start = time.monotonic()
                    for i, chunk in enumerate(chunks):
                        time.sleep(max(0.0, start + i / fps - time.monotonic()))
                        self.sent.append(time.time())
                        conn.sendall(chunk)

        def refuse_the_rest() -> None:
            with contextlib.suppress(OSError):
                while True:
                    self._listener.accept()[0].close()

        threading.Thread(target=serve, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def __enter__(self) -> TsCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
