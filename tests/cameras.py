"""Live sources on loopback for the tests of `detector predict URL`: an IP camera's HTTP MJPEG stream, a camera's
MPEG-TS over TCP and an RTSP camera's H.264 (the benchmark's cameras, benchmarks/cameras.py), and plain files over
HTTP (a playlist, a clip)."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from benchmarks.cameras import MjpegCamera, RtspCamera, TsCamera, h264_frames, h265_frames, ts_chunks


def mjpeg_packets(clip: Path) -> list[bytes]:
    """The JPEG of every frame of an MJPEG clip (an AVI), as stored: what a camera sends, byte for byte."""
    import av

    with av.open(str(clip)) as container:
        return [bytes(p) for p in container.demux(container.streams.video[0]) if p.size]


@contextlib.contextmanager
def mjpeg_camera(jpegs: Sequence[bytes], fps: float, frames: int = 0, then: str = "close") -> Iterator[str]:
    """An IP camera sending `jpegs` over and over at `fps` from frame 0 to each client, `frames` in all (0: until the
    `with` ends), then `then` ("close", or "stall": the connection kept open, nothing sent). Yields the stream's
    URL; frame i is `jpegs[i % len(jpegs)]`."""
    with MjpegCamera(list(jpegs), fps, frames=frames, then=then) as camera:
        yield camera.url


@contextlib.contextmanager
def mpegts_camera(frames: Sequence[np.ndarray], fps: float) -> Iterator[str]:
    """A camera sending `frames` (RGB, all one size) as MPEG-4 Part 2 in MPEG-TS over TCP at `fps` to the first who
    connects, then closing the connection: the stream's end. Yields `tcp://127.0.0.1:<port>`."""
    with TsCamera(ts_chunks((f[:, :, ::-1] for f in frames), fps, codec="mpeg4"), fps) as camera:
        yield camera.url


@contextlib.contextmanager
def rtsp_camera(
    units: list[list[bytes]],
    fps: float,
    then: str = "bye",
    user: str | None = None,
    password: str | None = None,
    auth: str = "basic",
    transports: tuple[str, ...] = ("tcp",),
    codec: str = "h264",
) -> Iterator[str]:
    """An RTSP camera sending these H.264 frames (`h264_rgb`; H.265 with `codec="h265"`, `h265_rgb`) at `fps` to each
    client, then `then` ("bye": the stream's end; "close": the connection dropped). With `user` and `password` it asks
    for them (`auth`: "basic" or "digest"); the URL yielded carries them. `transports`: how it sends RTP ("tcp": over
    the RTSP connection, "udp")."""
    with RtspCamera(
        units, fps, then=then, user=user, password=password, auth=auth, transports=transports, codec=codec
    ) as camera:
        yield camera.url


def h264_rgb(frames: Sequence[np.ndarray], fps: float) -> list[list[bytes]]:
    """RGB frames as an RTSP camera's H.264 (x264 zerolatency): each frame's NAL units."""
    return h264_frames((f[:, :, ::-1] for f in frames), fps)


def h265_rgb(frames: Sequence[np.ndarray], fps: float, slices: int = 1) -> list[list[bytes]]:
    """RGB frames as an RTSP camera's H.265 (x265 zerolatency, `slices` a picture): each frame's NAL units."""
    return h265_frames((f[:, :, ::-1] for f in frames), fps, slices)


def annex_b(units: list[list[bytes]]) -> bytes:
    """Those frames as a raw H.264 bitstream (Annex B)."""
    return b"".join(b"\0\0\0\1" + nal for nals in units for nal in nals)


def h264_mkv(units: list[list[bytes]], fps: int, path: Path) -> Path:
    """Those frames, the same bitstream, in a Matroska file at `fps` (what `detect_video` reads)."""
    import io
    from fractions import Fraction

    import av

    with av.open(io.BytesIO(annex_b(units)), "r", format="h264") as raw, av.open(str(path), "w") as out:
        stream = out.add_stream_from_template(raw.streams.video[0])
        for i, packet in enumerate(p for p in raw.demux(raw.streams.video[0]) if p.size):
            packet.pts = packet.dts = i
            packet.time_base = Fraction(1, fps)
            packet.stream = stream
            out.mux(packet)
    return path


@contextlib.contextmanager
def http_files(files: dict[str, bytes]) -> Iterator[str]:
    """Files served over loopback HTTP (`files`: path -> bytes); yields the base URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the reader left
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
