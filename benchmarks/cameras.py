"""Cameras on loopback, for `benchmarks/live.py` and the tests of `detector predict URL`: an IP camera's HTTP MJPEG
stream (`MjpegCamera`), a camera sending MPEG-TS over TCP (`TsCamera`, its bytes from `ts_chunks`), a live FLV
stream over HTTP (`HttpFlvCamera`; both are `HttpCamera`s), an RTMP server (`RtmpCamera`) and an RTSP camera sending
H.264 (or H.265) in RTP over the RTSP connection or UDP (`RtspCamera`; these two take their frames from
`h264_frames`, `h265_frames`). Each
sends at a camera's pace on threads of its own, notes when it sent each frame, and stops at `close()` (or its
`with`)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import io
import re
import secrets
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any

import numpy as np


class Login:
    """A camera's user and password, asked as HTTP asks (RFC 2617, which RTSP borrows): "basic", or "digest" as most
    IP cameras ask (without qop)."""

    def __init__(self, user: str, password: str | None, auth: str = "basic") -> None:
        self.user, self.password, self.digest = user, password or "", auth == "digest"

    def challenge(self, nonce: str) -> str:
        """The WWW-Authenticate header of a 401."""
        return f'Digest realm="camera", nonce="{nonce}"' if self.digest else 'Basic realm="camera"'

    def accepts(self, method: str, given: str, nonce: str) -> bool:
        """Whether the Authorization header `given` carries this user and password."""
        if not self.digest:
            return given == f"Basic {base64.b64encode(f'{self.user}:{self.password}'.encode()).decode()}"
        fields = dict(re.findall(r'(\w+)="([^"]*)"', given))
        if not given.startswith("Digest ") or fields.get("username") != self.user or fields.get("nonce") != nonce:
            return False

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        known = md5(f"{self.user}:camera:{self.password}")
        return fields.get("response") == md5(f"{known}:{nonce}:{md5(method + ':' + fields.get('uri', ''))}")


class HttpCamera:
    """A stream over HTTP at `fps` to each client from chunk 0: `chunks` over and over, `frames` in all (None: each
    chunk once; 0: until closed), each sent as `part` makes it, then `then`: "close" the connection or "stall" (keep it
    open, sending nothing). With `once`, after one client got every frame the next ones get a 503 (Ultralytics' loader
    reconnects at a stream's end). With `login`, a request without its user and password gets a 401 (and `url`
    carries them). `sent`: when each frame went, on the connection that got the most; `url`: the stream's.
    Subclasses say what the stream is (`CONTENT_TYPE`, `PATH`, `part`)."""

    CONTENT_TYPE = "application/octet-stream"
    PATH = "/stream"

    def __init__(
        self,
        chunks: list[bytes],
        fps: float,
        frames: int | None = None,
        then: str = "close",
        once: bool = False,
        login: Login | None = None,
    ) -> None:
        self.connections: list[list[float]] = []
        self._done = threading.Event()
        finished = threading.Event()
        total = len(chunks) if frames is None else frames
        camera = self
        nonce = secrets.token_hex(8)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if login and not login.accepts("GET", self.headers.get("Authorization", ""), nonce):
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", login.challenge(nonce))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if once and finished.is_set():
                    self.send_error(503)
                    return
                sent: list[float] = []
                camera.connections.append(sent)
                self.send_response(200)
                self.send_header("Content-Type", camera.CONTENT_TYPE)
                self.end_headers()
                start = time.monotonic()
                with contextlib.suppress(OSError):  # the client left
                    i = 0
                    while (total == 0 or i < total) and not camera._done.is_set():
                        time.sleep(max(0.0, start + i / fps - time.monotonic()))
                        sent.append(time.time())
                        self.wfile.write(camera.part(chunks[i % len(chunks)]))
                        i += 1
                    finished.set()
                    if then == "stall":
                        camera._done.wait(60)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        credentials = f"{login.user}:{login.password}@" if login else ""
        self.url = f"http://{credentials}127.0.0.1:{self._server.server_address[1]}{self.PATH}"

    def part(self, chunk: bytes) -> bytes:
        """What goes on the wire for one chunk."""
        return chunk

    @property
    def sent(self) -> list[float]:
        return max(self.connections, key=len, default=[])

    def close(self) -> None:
        self._done.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HttpCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MjpegCamera(HttpCamera):
    """An IP camera's HTTP MJPEG: `multipart/x-mixed-replace` JPEG parts (`HttpCamera`'s chunks are the JPEGs). An
    HTTP MJPEG stream has no end mark: `then="close"` is how a camera stops."""

    CONTENT_TYPE = "multipart/x-mixed-replace; boundary=frame"
    PATH = "/video.mjpg"

    def part(self, chunk: bytes) -> bytes:
        return b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(chunk) + chunk + b"\r\n"


class UnsizedMjpegCamera(MjpegCamera):
    """An HTTP MJPEG camera whose parts carry no `Content-Length` (the Flask "video streaming" pattern that many
    Python-built and Raspberry Pi cameras copy): a reader knows a part is over by its JPEG's end or the next
    boundary."""

    def part(self, chunk: bytes) -> bytes:
        return b"--frame\r\nContent-Type: image/jpeg\r\n\r\n" + chunk + b"\r\n"


class HttpFlvCamera(HttpCamera):
    """HTTP-FLV, as live-streaming servers (SRS, nginx-http-flv) and many cameras serve it: the FLV chunks
    (`ts_chunks(..., container="flv")`, sent as they are), by default each once, then the connection closed."""

    CONTENT_TYPE = "video/x-flv"
    PATH = "/live.flv"


def ts_chunks(
    frames: Iterable[np.ndarray],
    fps: float,
    codec: str = "libx264",
    container: str = "mpegts",
    audio: bool = False,
) -> list[bytes]:
    """BGR frames (all one size) encoded with `codec` in MPEG-TS (or another `container`: "flv"), one chunk of bytes
    per frame, each what a camera sends for that frame. libx264 runs `veryfast` with `zerolatency` (no B-frames, each
    frame's bytes at once, as cameras send) and a key frame a second; libx265 `ultrafast` with `zerolatency`. With
    `audio`, an AAC track too (16 kHz mono silence, as cameras send), encoded `_Silence.LEAD_S` ahead of the video:
    the muxer holds a packet until every track has one as late, and the AAC encoder holds back its first frames, so
    audio behind would hold each video frame (a camera muxes what it has at once)."""
    import av

    written = bytearray()

    class Sink:
        def write(self, data: bytes) -> int:
            written.extend(data)
            return len(data)

    chunks: list[bytes] = []
    muxing = {"flush_packets": "1"}
    if audio and container == "mpegts":
        muxing["pes_payload_size"] = "0"  # an audio frame a PES packet, as cameras send (not 2930 bytes' worth)
    out = av.open(Sink(), "w", format=container, container_options=muxing)
    try:
        options = {
            "libx264": {"preset": "veryfast", "tune": "zerolatency"},
            "libx265": {"preset": "ultrafast", "tune": "zerolatency", "x265-params": "log-level=error"},
        }.get(codec, {})
        stream: Any = None
        sound = _Silence(out) if audio else None
        for n, frame in enumerate(frames):
            if stream is None:
                stream = out.add_stream(codec, rate=round(fps), options=options)
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.codec_context.gop_size = round(fps)
            if sound is not None:
                sound.until((n + 1) / fps + sound.LEAD_S)
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")):
                out.mux(packet)
            chunks.append(bytes(written))
            written.clear()
        if stream is not None:
            for packet in stream.encode():
                out.mux(packet)
        if sound is not None:
            sound.end()
    finally:
        out.close()
    if chunks:
        chunks[-1] += bytes(written)
    return chunks


class _Silence:
    """An AAC track of silence in `out` (16 kHz mono, 1024 samples a frame), encoded on demand."""

    RATE, SAMPLES = 16000, 1024
    LEAD_S = 0.25  # over the encoder's delay (1024 samples and its look-ahead)

    def __init__(self, out: Any) -> None:
        self._out = out
        self._stream = out.add_stream("aac", rate=self.RATE, layout="mono")
        self._sent = 0  # samples encoded

    def until(self, seconds: float) -> None:
        import av

        while self._sent < seconds * self.RATE:
            frame = av.AudioFrame.from_ndarray(np.zeros((1, self.SAMPLES), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = self.RATE, self._sent
            for packet in self._stream.encode(frame):
                self._out.mux(packet)
            self._sent += self.SAMPLES

    def end(self) -> None:
        for packet in self._stream.encode():
            self._out.mux(packet)


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


def h264_frames(frames: Iterable[np.ndarray], fps: float) -> list[list[bytes]]:
    """BGR frames (all one size) encoded as H.264 by x264 (`veryfast`, `zerolatency`: no B-frames, each frame's
    bytes at once, as cameras send; a key frame a second, each with its SPS and PPS): each frame's NAL units,
    without their Annex B start codes, what an RTSP camera packs into RTP."""
    return _encoded(frames, fps, "libx264", {"preset": "veryfast", "tune": "zerolatency"})


def h265_frames(frames: Iterable[np.ndarray], fps: float, slices: int = 1) -> list[list[bytes]]:
    """The same as H.265 (HEVC) by x265 (`ultrafast`, `zerolatency`; a key frame a second, each with its VPS, SPS
    and PPS), as the newer cameras send; each picture in `slices` slices (cameras send one)."""
    params = f"log-level=error:keyint={round(fps)}:repeat-headers=1:slices={slices}"
    return _encoded(frames, fps, "libx265", {"preset": "ultrafast", "tune": "zerolatency", "x265-params": params})


def rtp_frames(frames: Iterable[np.ndarray], fps: float, codec: str) -> list[list[bytes]]:
    """BGR frames (all one size) as an RTSP camera sends `codec` ("mjpeg": RFC 2435's JPEG, "mpeg4": RFC 6416's
    MP4V-ES): each frame's RTP payloads, cut by FFmpeg's own packetizer (its RTP muxer), the last one of a frame the
    one with the marker bit."""
    import av

    class Sink(io.RawIOBase):  # the muxer writes one RTP (or RTCP) packet at a time
        def __init__(self) -> None:
            self.packets: list[bytes] = []

        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            self.packets.append(bytes(data))
            return len(data)

    sink = Sink()
    out = av.open(sink, "w", format="rtp", options={"packetsize": str(RtspCamera.MTU)})
    stream: Any = None
    for n, frame in enumerate(frames):
        if stream is None:
            stream = out.add_stream(codec, rate=round(fps))
            stream.height, stream.width = frame.shape[:2]
            stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")
        picture.pts = n
        out.mux(stream.encode(picture))
    if stream is not None:
        out.mux(stream.encode(None))
    out.close()
    grouped: list[list[bytes]] = [[]]
    for packet in sink.packets:
        if 200 <= packet[1] <= 204:  # RTCP (sender reports)
            continue
        grouped[-1].append(packet[12:])  # (a fixed header: no CSRCs, no extension)
        if packet[1] & 0x80:
            grouped.append([])
    return [payloads for payloads in grouped if payloads]


def _encoded(frames: Iterable[np.ndarray], fps: float, encoder: str, options: dict[str, str]) -> list[list[bytes]]:
    """Each frame's NAL units, in the order the encoder gave them out (x265 with several slices keeps one back)."""
    import av

    codec: Any = None
    packets: list[bytes] = []
    for n, frame in enumerate(frames):
        if codec is None:
            codec = av.CodecContext.create(encoder, "w")
            codec.height, codec.width = frame.shape[:2]
            codec.pix_fmt, codec.gop_size = "yuv420p", round(fps)
            codec.time_base = Fraction(1, round(fps))
            codec.options = options
        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")
        picture.pts = n
        packets += [bytes(p) for p in codec.encode(picture)]
    if codec is not None:
        packets += [bytes(p) for p in codec.encode(None)]
    return [_nal_units(packet) for packet in packets]


def _parameter_sets(nals: list[bytes], codec: str = "h264") -> list[bytes]:
    """The parameter sets among a key frame's NAL units, which a client needs before a frame: H.264's SPS and PPS
    (types 7, 8), H.265's VPS, SPS and PPS (32, 33, 34)."""
    return [next(n for n in nals if _nal_type(n, codec) == kind) for kind in _PARAMETER_SETS[codec]]


_PARAMETER_SETS = {"h264": (7, 8), "h265": (32, 33, 34)}  # NAL unit types: (VPS,) SPS, PPS


def _nal_type(nal: bytes, codec: str) -> int:
    return (nal[0] >> 1) & 0x3F if codec == "h265" else nal[0] & 0x1F


def _is_parameter_set(nal: bytes, codec: str) -> bool:
    return _nal_type(nal, codec) in _PARAMETER_SETS[codec]


def _nal_units(annex_b: bytes) -> list[bytes]:
    """The NAL units of an Annex B bitstream, without their start codes (3 or 4 bytes: the 4th is a zero left at
    the end of the unit before, which never ends in zero)."""
    return [nal.rstrip(b"\0") for nal in re.split(b"\0\0\1", annex_b) if nal.strip(b"\0")]


class RtspCamera:
    """An RTSP camera (RFC 2326) on loopback: DESCRIBE gives an H.264 stream (`h264_frames`; with `codec="h265"`,
    H.265 from `h265_frames`; with "mjpeg" or "mpeg4", the RTP payloads of `rtp_frames`), SETUP takes the
    `transports` it serves ("tcp": RTP over the RTSP connection, interleaved, what `detector predict` asks for first;
    "udp": RTP and RTCP to the client's two UDP ports; another gets 461 Unsupported Transport), PLAY sends
    frame i at i/`fps` in RTP packets (RFC 6184, RFC 7798 for H.265: a NAL unit a packet, fragmentation units above
    `MTU` bytes, cut at that size as camera packetizers cut), then `then`:
    "bye" (an RTCP BYE: the stream's end), "close" (the connection dropped) or "stall" (kept open, no more video).
    With `user` and `password` every request needs them (`auth`: "basic", or "digest" as most IP cameras ask, RFC 2617
    without qop; 401 without them); `url` carries them. With `once`, after one client got every frame the next ones
    get a 503. With `audio`, a second track as most IP cameras have by default: G.711 mu-law (PCMU, payload type 0),
    20 ms packets of silence while the video plays (and on after it, with "stall"). With `inline_sets=False` the
    frames go without their parameter sets, which only the session description carries (as some cameras send).
    `sent`: when each frame went, on the connection that got the most. Written here because no package of the
    registries serves RTSP (GStreamer's server and mediamtx are not pip-installable); it speaks just what FFmpeg's
    client needs."""

    MTU = 1400

    def __init__(
        self,
        frames: list[list[bytes]],
        fps: float,
        then: str = "bye",
        user: str | None = None,
        password: str | None = None,
        once: bool = False,
        auth: str = "basic",
        transports: tuple[str, ...] = ("tcp",),
        codec: str = "h264",
        audio: bool = False,
        inline_sets: bool = True,
    ) -> None:
        self.connections: list[list[float]] = []
        # The first frame's parameter sets, for the session description (H.264's and H.265's)
        self._sets = _parameter_sets(frames[0], codec) if codec in _PARAMETER_SETS else []
        self._payload_type = 26 if codec == "mjpeg" else 96  # JPEG's static type (RFC 3551), else a dynamic one
        if not inline_sets:
            frames = [[nal for nal in nals if not _is_parameter_set(nal, codec)] for nals in frames]
        self._frames, self._fps, self._then, self._once, self._codec = frames, fps, then, once, codec
        self._audio = audio
        self._transports = transports
        self._login = Login(user, password, auth) if user else None
        self._done, self._finished = threading.Event(), threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        port = self._listener.getsockname()[1]
        credentials = f"{user}:{password}@" if user else ""
        self.url = f"rtsp://{credentials}127.0.0.1:{port}/stream"
        self._base = f"rtsp://127.0.0.1:{port}/stream/"
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def sent(self) -> list[float]:
        return max(self.connections, key=len, default=[])

    def sdp(self) -> str:
        """The session description: the first frame's parameter sets (so a client knows the size before a frame)."""
        raw = self._sets
        sets = [base64.b64encode(n).decode() for n in raw]
        if self._codec == "mjpeg":
            media = "a=rtpmap:26 JPEG/90000\r\n"
        elif self._codec == "mpeg4":  # (its configuration comes in the stream, before the first frame)
            media = "a=rtpmap:96 MP4V-ES/90000\r\na=fmtp:96 profile-level-id=1\r\n"
        elif self._codec == "h265":
            vps, sps, pps = sets
            media = f"a=rtpmap:96 H265/90000\r\na=fmtp:96 sprop-vps={vps};sprop-sps={sps};sprop-pps={pps}\r\n"
        else:
            profile = raw[0][1:4].hex()  # the SPS's profile, constraints and level
            media = "a=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;"
            media += f"profile-level-id={profile};sprop-parameter-sets={','.join(sets)}\r\n"
        audio = "m=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=control:track2\r\n" if self._audio else ""
        return (
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=camera\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\na=control:*\r\n"
            f"m=video 0 RTP/AVP {self._payload_type}\r\n{media}a=framerate:{self._fps:g}\r\na=control:track1\r\n{audio}"
        )

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self._listener.accept()
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        lock = threading.Lock()  # replies and RTP share the connection
        session = secrets.token_hex(4)

        def reply(status: str, cseq: str, headers: dict[str, str] | None = None, body: str = "") -> None:
            head = f"RTSP/1.0 {status}\r\nCSeq: {cseq}\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
            if body:
                head += f"Content-Length: {len(body)}\r\n"
            with lock:
                conn.sendall((head + "\r\n" + body).encode())

        udp: dict[int, _UdpPeer] = {}  # RTP over UDP by track (0 video, 1 audio), when SETUP asked for it
        with conn, contextlib.ExitStack() as stack, contextlib.suppress(OSError, ValueError):
            rfile = conn.makefile("rb")
            while not self._done.is_set():
                first = rfile.read(1)
                if not first:
                    return
                if first == b"$":  # the client's own interleaved packets (RTCP receiver reports): skipped
                    head = rfile.read(3)
                    rfile.read(int.from_bytes(head[1:3], "big"))
                    continue
                method, target, *_ = (first + rfile.readline()).decode().split(" ")
                headers: dict[str, str] = {}
                while line := rfile.readline().decode().strip():
                    key, _, value = line.partition(":")
                    headers[key.strip().lower()] = value.strip()
                rfile.read(int(headers.get("content-length", 0)))
                cseq = headers.get("cseq", "0")
                if self._login and not self._login.accepts(method, headers.get("authorization", ""), session):
                    challenge = self._login.challenge(session)
                    reply("401 Unauthorized", cseq, {"WWW-Authenticate": challenge})
                elif method == "OPTIONS":
                    reply("200 OK", cseq, {"Public": "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER"})
                elif method == "DESCRIBE" and self._once and self._finished.is_set():
                    reply("503 Service Unavailable", cseq)
                elif method == "DESCRIBE":
                    reply("200 OK", cseq, {"Content-Type": "application/sdp", "Content-Base": self._base}, self.sdp())
                elif method == "SETUP":
                    asked = headers.get("transport", "")
                    ports = re.search(r"client_port=(\d+)-(\d+)", asked)
                    track = 1 if target.endswith("track2") else 0
                    if "/TCP" in asked and "tcp" in self._transports:
                        transport = f"RTP/AVP/TCP;unicast;interleaved={2 * track}-{2 * track + 1}"
                    elif ports and "/TCP" not in asked and "udp" in self._transports:
                        peer = udp[track] = _UdpPeer(conn.getpeername()[0], int(ports[1]), int(ports[2]))
                        stack.callback(peer.close)
                        transport = f"RTP/AVP;unicast;client_port={ports[1]}-{ports[2]};server_port={peer.ports}"
                    else:
                        reply("461 Unsupported Transport", cseq)
                        continue
                    reply("200 OK", cseq, {"Transport": transport, "Session": f"{session};timeout=60"})
                elif method == "PLAY":
                    reply("200 OK", cseq, {"Session": session, "Range": "npt=0.000-"})
                    threading.Thread(target=self._play, args=(conn, lock, udp), daemon=True).start()
                elif method == "TEARDOWN":
                    reply("200 OK", cseq, {"Session": session})
                    return
                elif method in ("GET_PARAMETER", "SET_PARAMETER"):  # keep-alives
                    reply("200 OK", cseq, {"Session": session})
                else:
                    reply("501 Not Implemented", cseq)

    def _play(self, conn: socket.socket, lock: threading.Lock, udp: dict[int, _UdpPeer]) -> None:
        sent: list[float] = []
        self.connections.append(sent)
        playing = threading.Event()  # ends the audio track's thread with the video
        tracks = [_RtpTrack(0, udp.get(0), conn, lock)]
        if self._audio:
            tracks.append(_RtpTrack(1, udp.get(1), conn, lock))
            threading.Thread(target=self._play_audio, args=(tracks[1], playing), daemon=True).start()
        video = tracks[0]
        start = time.monotonic()
        with contextlib.suppress(OSError):  # the client left
            try:
                for i, nals in enumerate(self._frames):
                    if self._done.is_set():
                        return
                    time.sleep(max(0.0, start + i / self._fps - time.monotonic()))
                    timestamp = round(i * 90000 / self._fps)
                    packets = [
                        video.packet(self._payload_type, last, timestamp, p)
                        for last, p in _rtp_payloads(nals, self.MTU, self._codec)
                    ]
                    sent.append(time.time())
                    video.send(packets)
            finally:
                if self._then != "stall":  # a stalled camera's audio goes on: its encoder stopped, not the camera
                    playing.set()
            self._finished.set()
            if self._then == "bye":  # RTCP BYE on each track's RTCP channel: FFmpeg's client ends the stream cleanly
                for track in tracks:  # once every track said it
                    track.bye()
            elif self._then == "close":
                conn.shutdown(socket.SHUT_RDWR)
            else:
                self._done.wait(60)

    def _play_audio(self, track: _RtpTrack, playing: threading.Event) -> None:
        """20 ms of G.711 mu-law silence (160 samples at 8 kHz) every 20 ms, until `playing` is set or the camera
        closes."""
        with contextlib.suppress(OSError):
            n, start = 0, time.monotonic()
            while not playing.wait(max(0.0, start + n * 0.02 - time.monotonic())) and not self._done.is_set():
                track.send([track.packet(0, n == 0, n * 160, b"\xff" * 160)])
                n += 1

    def close(self) -> None:
        self._done.set()
        self._listener.close()

    def __enter__(self) -> RtspCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _RtpTrack:
    """One track's RTP packets (its own SSRC and sequence numbers), sent over UDP or interleaved on the RTSP
    connection (channels 2 * `index` for RTP, the next for RTCP)."""

    def __init__(self, index: int, udp: _UdpPeer | None, conn: socket.socket, lock: threading.Lock) -> None:
        self._channel, self._udp, self._conn, self._lock = 2 * index, udp, conn, lock
        self._ssrc, self._seq = secrets.randbits(32), secrets.randbits(16)

    def packet(self, payload_type: int, marker: bool, timestamp: int, payload: bytes) -> bytes:
        head = bytes([0x80, payload_type | (0x80 if marker else 0)]) + self._seq.to_bytes(2, "big")
        self._seq = (self._seq + 1) & 0xFFFF
        return head + (timestamp & 0xFFFFFFFF).to_bytes(4, "big") + self._ssrc.to_bytes(4, "big") + payload

    def send(self, packets: list[bytes]) -> None:
        if self._udp is not None:
            self._udp.send_rtp(packets)
        else:
            self._interleaved(self._channel, packets)

    def bye(self) -> None:
        """An RTCP BYE, with a reason: FFmpeg drops an RTCP packet shorter than an RTP header (12 bytes)."""
        bye = bytes([0x81, 203, 0, 2]) + self._ssrc.to_bytes(4, "big") + b"\3end"
        if self._udp is not None:
            self._udp.send_rtcp(bye)
        else:
            self._interleaved(self._channel + 1, [bye])

    def _interleaved(self, channel: int, packets: list[bytes]) -> None:
        """`packets` on the RTSP connection, each after "$", its channel and its length (RFC 2326 10.12)."""
        framed = b"".join(bytes([0x24, channel]) + len(p).to_bytes(2, "big") + p for p in packets)
        with self._lock:
            self._conn.sendall(framed)


class _UdpPeer:
    """RTP and RTCP over UDP to a client's two ports, from two of this camera's own (RFC 2326's client_port and
    server_port)."""

    def __init__(self, host: str, rtp_port: int, rtcp_port: int) -> None:
        self._rtp, self._rtcp = (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
        )
        self._rtp.bind(("127.0.0.1", 0))
        self._rtcp.bind(("127.0.0.1", 0))
        self.ports = f"{self._rtp.getsockname()[1]}-{self._rtcp.getsockname()[1]}"
        self._to_rtp, self._to_rtcp = (host, rtp_port), (host, rtcp_port)

    def send_rtp(self, packets: list[bytes]) -> None:
        for packet in packets:
            self._rtp.sendto(packet, self._to_rtp)

    def send_rtcp(self, packet: bytes) -> None:
        self._rtcp.sendto(packet, self._to_rtcp)

    def close(self) -> None:
        self._rtp.close()
        self._rtcp.close()


def _rtp_payloads(nals: list[bytes], mtu: int, codec: str = "h264") -> Iterator[tuple[bool, bytes]]:
    """RTP payloads of one frame's NAL units, each with whether it is the frame's last (the marker bit): a NAL unit
    whole where it fits, else fragmentation units of `mtu` bytes of it, the last one shorter: H.264's FU-A (RFC
    6184: an indicator byte, then S/E bits and the type), H.265's FU (RFC 7798: a two-byte payload header of type
    49, then S/E bits and the type). Any other codec's frame is its payloads already (`rtp_frames`)."""
    if codec not in _PARAMETER_SETS:
        yield from ((n == len(nals) - 1, payload) for n, payload in enumerate(nals))
        return
    h265 = codec == "h265"
    header_size = 2 if h265 else 1
    for n, nal in enumerate(nals):
        last_nal = n == len(nals) - 1
        if len(nal) <= mtu:
            yield last_nal, nal
            continue
        if h265:
            indicator, kind = bytes([(nal[0] & 0x81) | (49 << 1), nal[1]]), (nal[0] >> 1) & 0x3F
        else:
            indicator, kind = bytes([(nal[0] & 0xE0) | 28]), nal[0] & 0x1F
        body = nal[header_size:]
        for at in range(0, len(body), mtu):
            start, end = at == 0, at + mtu >= len(body)
            header = (0x80 if start else 0) | (0x40 if end else 0) | kind
            yield last_nal and end, indicator + bytes([header]) + body[at : at + mtu]


class RtmpCamera:
    """An RTMP server on loopback playing one H.264 stream (`h264_frames`), video only, as a camera or a streaming
    server (SRS, nginx-rtmp) hands it to a player: the handshake (the simple one, version 3), `connect`,
    `createStream`, `play` answered, then the AVC sequence header and frame i at i/`fps` as FLV video messages, then
    `NetStream.Play.Stop` (the stream's end). With `once`, after one client got every frame the next connections are
    closed at once (Ultralytics' loader reconnects at a stream's end). `sent`: when each frame went, on the connection
    that got the most;
    `url`: rtmp://127.0.0.1:<port>/live/cam. Written here because no package of the registries serves RTMP, and
    FFmpeg cannot serve it through PyAV (its `listen` option does not reach the output's protocol); it speaks just
    what FFmpeg's client needs."""

    CHUNK = 65536  # the chunk size it sends with (announced before anything else)

    def __init__(self, frames: list[list[bytes]], fps: float, once: bool = False) -> None:
        self.connections: list[list[float]] = []
        self._frames, self._fps, self._once = frames, fps, once
        self._done, self._finished = threading.Event(), threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"rtmp://127.0.0.1:{self._listener.getsockname()[1]}/live/cam"
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def sent(self) -> list[float]:
        return max(self.connections, key=len, default=[])

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self._listener.accept()
                if self._once and self._finished.is_set():
                    conn.close()
                    continue
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError, ValueError, EOFError):
            rfile = conn.makefile("rb")
            c0c1 = _read_exactly(rfile, 1 + 1536)
            # S0, S1 (time, zeros: no digest, so the client checks none), S2 (the client's C1 echoed)
            conn.sendall(b"\x03" + bytes(8) + secrets.token_bytes(1528) + c0c1[1:])
            _read_exactly(rfile, 1536)  # C2
            send = _RtmpSender(conn, self.CHUNK)
            send(2, 1, 0, self.CHUNK.to_bytes(4, "big"))  # Set Chunk Size
            for name, txn in _rtmp_commands(rfile):
                if name == "connect":
                    send(2, 5, 0, (2_500_000).to_bytes(4, "big"))  # Window Acknowledgement Size
                    send(2, 6, 0, (2_500_000).to_bytes(4, "big") + b"\x02")  # Set Peer Bandwidth
                    status = {"level": "status", "code": "NetConnection.Connect.Success", "description": "ok"}
                    send(3, 20, 0, _amf("_result", txn, {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0}, status))
                elif name == "createStream":
                    send(3, 20, 0, _amf("_result", txn, None, 1.0))
                elif name == "play":
                    send(2, 4, 0, bytes(2) + (1).to_bytes(4, "big"))  # User Control: Stream Begin, stream 1
                    started = {"level": "status", "code": "NetStream.Play.Start", "description": "play"}
                    send(5, 20, 1, _amf("onStatus", 0.0, None, started))
                    self._play(send)
                    return

    def _play(self, send: _RtmpSender) -> None:
        sent: list[float] = []
        self.connections.append(sent)
        sps, pps = _parameter_sets(self._frames[0])
        record = bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]) + len(sps).to_bytes(2, "big") + sps
        record += b"\x01" + len(pps).to_bytes(2, "big") + pps  # AVCDecoderConfigurationRecord
        send(6, 9, 1, b"\x17\x00\x00\x00\x00" + record)
        start = time.monotonic()
        for i, nals in enumerate(self._frames):
            if self._done.is_set():
                return
            time.sleep(max(0.0, start + i / self._fps - time.monotonic()))
            key = any(n[0] & 0x1F == 5 for n in nals)
            body = b"".join(len(n).to_bytes(4, "big") + n for n in nals)
            sent.append(time.time())
            send(6, 9, 1, (b"\x17" if key else b"\x27") + b"\x01\x00\x00\x00" + body, round(i * 1000 / self._fps))
        self._finished.set()
        stopped = {"level": "status", "code": "NetStream.Play.Stop", "description": "end"}
        send(5, 20, 1, _amf("onStatus", 0.0, None, stopped))

    def close(self) -> None:
        self._done.set()
        self._listener.close()

    def __enter__(self) -> RtmpCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _RtmpSender:
    """RTMP messages out, in chunks of `chunk` bytes: a type-0 header, then type-3 continuations."""

    def __init__(self, conn: socket.socket, chunk: int) -> None:
        self._conn, self._chunk = conn, chunk

    def __call__(self, csid: int, kind: int, stream: int, body: bytes, timestamp: int = 0) -> None:
        head = bytes([csid]) + min(timestamp, 0xFFFFFF).to_bytes(3, "big") + len(body).to_bytes(3, "big")
        head += bytes([kind]) + stream.to_bytes(4, "little")
        if timestamp >= 0xFFFFFF:
            head += timestamp.to_bytes(4, "big")
        pieces = [body[at : at + self._chunk] for at in range(0, len(body), self._chunk)] or [b""]
        self._conn.sendall(head + pieces[0] + b"".join(bytes([0xC0 | csid]) + p for p in pieces[1:]))


def _read_exactly(rfile: Any, size: int) -> bytes:
    data = rfile.read(size)
    if len(data) < size:
        raise EOFError
    return bytes(data)


def _rtmp_commands(rfile: Any) -> Iterator[tuple[str, float]]:
    """The client's AMF0 commands (name, transaction id), from its chunk stream (RTMP 5.3: the four header types,
    extended timestamps, its Set Chunk Size honoured); its other messages are skipped."""
    chunk = 128  # the client's, until it sets another
    last: dict[int, tuple[int, int, bytes]] = {}  # each chunk stream's last header (length, type), message so far
    while True:
        first = _read_exactly(rfile, 1)[0]
        fmt, csid = first >> 6, first & 0x3F
        if csid == 0:
            csid = 64 + _read_exactly(rfile, 1)[0]
        elif csid == 1:
            csid = 64 + int.from_bytes(_read_exactly(rfile, 2), "little")
        length, kind, partial = last.get(csid, (0, 0, b""))
        if fmt < 3:
            header = _read_exactly(rfile, (11, 7, 3)[fmt])
            extended = header[:3] == b"\xff\xff\xff"
            if fmt < 2:
                length, kind = int.from_bytes(header[3:6], "big"), header[6]
            if extended:
                _read_exactly(rfile, 4)
        partial += _read_exactly(rfile, min(chunk, length - len(partial)))
        if len(partial) < length:
            last[csid] = (length, kind, partial)
            continue
        last[csid] = (length, kind, b"")
        if kind == 1:  # Set Chunk Size
            chunk = int.from_bytes(partial[:4], "big") & 0x7FFFFFFF
        elif kind == 20:  # AMF0 command
            name_length = int.from_bytes(partial[1:3], "big")
            name = partial[3 : 3 + name_length].decode()
            txn = struct.unpack(">d", partial[4 + name_length : 12 + name_length])[0]
            yield name, txn


def _amf(*values: Any) -> bytes:
    """AMF0: numbers, strings, None (null) and dicts (objects) of those."""
    out = b""
    for value in values:
        if value is None:
            out += b"\x05"
        elif isinstance(value, str):
            out += b"\x02" + len(value).to_bytes(2, "big") + value.encode()
        elif isinstance(value, dict):
            out += b"\x03"
            for key, item in value.items():
                out += len(key).to_bytes(2, "big") + key.encode() + _amf(item)
            out += b"\x00\x00\x09"
        else:
            out += b"\x00" + struct.pack(">d", float(value))
    return out
