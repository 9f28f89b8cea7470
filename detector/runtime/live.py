"""Live sources for `detector predict URL`: a camera's RTSP stream, an IP camera's HTTP MJPEG, MPEG-TS over TCP or
UDP, read as fast as they are detected.

A file waits for its reader (`read_ahead`'s bounded queue holds the decoder back); a camera does not. Frames queued
behind a detector slower than the camera make every answer later than the one before (seconds behind after a
minute), and a reader that stops draining the connection lets the socket overflow, so the camera or FFmpeg drops data
and frames break. So a thread of its own reads the stream all the time and keeps only the newest frame (`_Newest`);
the detector takes the newest each time, and the frames it never took are counted as dropped. Ultralytics' stream
loader does the same with `buffer=False`. In an intra-only stream (MJPEG, what HTTP cameras send) only the packet is
kept and only the frames taken are decoded; other codecs need every frame decoded, so the thread decodes them all.

With `save`, every frame received is written (with the newest boxes drawn) at the time it arrived, so the recording
keeps the camera's pace whatever the detector's or the rate the stream declares. Credentials in the URL
(`rtsp://user:password@host/...`) never reach a message or the summary (`redact`). FFmpeg may use network protocols only
(`LIVE_PROTOCOLS`), never `file`: its HLS reader already refuses a remote playlist's local segments, and this holds
every other demuxer to the network too.
"""

from __future__ import annotations

import errno
import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import numpy.typing as npt

from detector.errors import InvalidInputError
from detector.runtime.live_bytes import RAW_PACKET_BYTES, SharedBytes, Splits
from detector.runtime.mjpeg_parts import JpegParts
from detector.runtime.rtp_video import WHOLE_PICTURES, Units, parserless
from detector.runtime.ts_demux import PesPackets, begins_ts
from detector.runtime.ts_video import PES_PICTURES, PesPictures
from detector.runtime.video import VideoInfo, lowres_for, upright

log = logging.getLogger("detector.runtime.live")
LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "tcp", "udp", "srt")
LIVE_PROTOCOLS = "rtsp,rtsps,rtmp,rtmps,rtmpt,rtp,srtp,http,https,httpproxy,tcp,tls,udp,srt,crypto"
DEFAULT_FPS = 25.0  # a stream that declares no rate (HTTP MJPEG): FFmpeg's own assumption for it
FLV_ANALYZE_US = 1_000_000  # how long FFmpeg reads an FLV stream (RTMP, HTTP-FLV) for its tracks, in microseconds
RATE_WINDOW = 256  # the latest arrivals a measured rate comes from (a camera's rate may change over a long run)


def is_live(source: str) -> bool:
    """True for a URL whose scheme is a live source's (`LIVE_SCHEMES`)."""
    scheme, sep, _ = source.partition("://")
    return bool(sep) and scheme.lower() in LIVE_SCHEMES


# Webcams: the FFmpeg inside PyAV's wheels has no v4l2 (nor dshow, avfoundation) input device (checked:
# `av.formats_available`), so a video device cannot be opened through it; said plainly rather than "not found".
WEBCAM_ADVICE = (
    "webcams (video devices) are not read: the FFmpeg in PyAV's wheels has no v4l2 input. Serve the camera as a "
    "stream and give its URL, e.g. `ffmpeg -f v4l2 -i /dev/video0 -c:v libx264 -tune zerolatency -f mpegts "
    "tcp://127.0.0.1:5000?listen=1`, then `detector predict tcp://127.0.0.1:5000` (or an RTSP server such as MediaMTX)"
)


def names_a_webcam(source: str) -> bool:
    """True for what names a webcam rather than a file: a Linux video device (`/dev/video0`) or a bare camera index
    (`0`, as Ultralytics takes one) where no file of that name exists."""
    return source.startswith("/dev/video") or (source.isdigit() and not Path(source).exists())


def check_live(source: str) -> None:
    """InvalidInputError for a URL-looking source that is not a live one (`file://`, `ftp://`...), naming those
    accepted, and for a webcam (`names_a_webcam`), saying how to read one."""
    if names_a_webcam(source):
        raise InvalidInputError(f"{source}: {WEBCAM_ADVICE}")
    scheme, sep, _ = source.partition("://")
    if sep and not is_live(source):
        raise InvalidInputError(
            f"{scheme}:// is not a source this reads: give a file, a folder or a live stream "
            f"({', '.join(LIVE_SCHEMES)})"
        )


def names_a_file(url: str, suffixes: tuple[str, ...]) -> bool:
    """True for an http(s) URL whose path ends in one of the video file `suffixes` (http://host/clip.mp4): a file
    served over HTTP, whose every frame is read (the server waits; nothing is missed), not a camera."""
    parts = urlsplit(url)
    return parts.scheme.lower() in ("http", "https") and parts.path.lower().endswith(suffixes)


def carries_flv(url: str) -> bool:
    """True for a source that sends FLV: RTMP (rtmp://, rtmps://...) and HTTP-FLV (an http(s) path ending .flv)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme.startswith("rtmp") or (scheme in ("http", "https") and parts.path.lower().endswith(".flv"))


def redact(url: str) -> str:
    """`url` without the password of its user part, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def steady_rate(arrivals: Sequence[float]) -> float | None:
    """Frames a second from frames' arrival times (seconds, in order); None for fewer than two or no time between.

    The median, over every frame i, of the time from frame i to frame i + h (h: half the frames), divided by h. The
    frames FFmpeg holds while it opens a stream come out together at the start, so (frames - 1) / (last - first)
    reads a 12 fps camera as 13.6 when the opening is slow; the median leaves those few spans out, and each span
    averages h frames, so a reader that falls behind and catches up (frames in bursts) still reads the camera's rate.
    """
    h = len(arrivals) // 2
    if h == 0:
        return None
    span = statistics.median(arrivals[i + h] - arrivals[i] for i in range(len(arrivals) - h))
    return h / span if span > 0 else None


class LiveFrame(NamedTuple):
    """A frame of a live stream, as `LiveStream.frames` gives it."""

    number: int  # its place among the frames received, 0-based
    pixels: npt.NDArray[np.uint8]  # RGB, upright; smaller than sent after a reduced decode
    time_s: float  # when it arrived, from the start of reading
    width: int  # its size as sent (boxes are given in it), upright
    height: int


class _NoVideo(Exception):
    """Other data came for `timeout_s`, but no video (`LiveStream._video_packets`)."""


class StreamEnded(Exception):  # not an error: why a live stream stopped giving frames
    """Raised by `LiveStream.frames` when the stream stops: `clean` for its end, else broken off or stalled."""

    def __init__(self, reason: str, clean: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.clean = clean


class _Newest:
    """A one-frame mailbox: `put` replaces what was not taken yet (counted as dropped), `take` waits for the next.
    With `keep_all` (a video file served over HTTP, not a camera) `put` waits for the frame before to be taken
    instead, until `stop` is set."""

    def __init__(self, keep_all: bool, stop: threading.Event) -> None:
        self._ready = threading.Condition()
        self._item: tuple[int, Any, float] | None = None
        self._end: StreamEnded | None = None
        self._keep_all, self._stop = keep_all, stop
        self.dropped = 0

    def put(self, item: tuple[int, Any, float]) -> None:
        with self._ready:
            while self._keep_all and self._item is not None and not self._stop.is_set():
                self._ready.wait(0.1)
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._ready.notify_all()

    def end(self, ended: StreamEnded) -> None:
        with self._ready:
            self._end = self._end or ended  # the first reason stands (an interrupt, then the reader's own end)
            self._ready.notify_all()

    def take(self) -> tuple[int, Any, float]:
        """The newest item; StreamEnded once the stream has stopped and nothing is left."""
        with self._ready:
            while self._item is None:
                if self._end is not None:
                    raise self._end
                self._ready.wait(0.5)  # a timeout, so Ctrl-C reaches the waiting thread
            item, self._item = self._item, None
            self._ready.notify_all()  # a `keep_all` reader waits for the slot
            return item


class LiveStream:
    """An open live source: `info` (its size and declared rate; `frames` 0), `frames()` the newest frame each
    time, and what became of the others (`received`, `dropped`, `damaged`). Close it (or use it as a context)."""

    def __init__(
        self,
        url: str,
        timeout_s: float = 10.0,
        reduce_to: tuple[int, int] | None = None,
        on_every_frame: Callable[[npt.NDArray[np.uint8], float], None] | None = None,
        keep_all: bool = False,
        started: float = 0.0,
    ) -> None:
        """`timeout_s`: the longest wait to connect and then for data (a stalled stream ends with an error).
        `reduce_to`: decode at the model's size where the codec can (as `read_frames`). `on_every_frame`: called on the
        reading thread with every frame received, whole, as RGB, and when it arrived (`LiveFrame.time_s`), for a
        recording; frames are then decoded whole. `keep_all`: no frame is dropped, the reader waits for the detector (a
        file served over HTTP, `names_a_file`). `started`: the `time.monotonic()` frame times count from (a reconnection
        keeps the first connection's); 0: when reading starts."""

        self.name = redact(url)
        self.timeout_s = timeout_s
        # FFmpeg reads 20 frames to estimate a rate before the stream opens (0.73 s of a 30 fps camera, 1.47 s at
        # 15 fps, all but the newest then dropped). Not needed: an RTSP stream's RTP timestamps give the rate (checked
        # with and without the SDP's `a=framerate`; H.264's wait for a first decoding time is taken away below), and an
        # MPEG-TS stream's codec header does (H.264's or MPEG-2's: opened in 0.10-0.20 s; the stream's own guess is
        # then twice the rate, counting fields, so the codec's is taken before it below). An HTTP MJPEG stream opened at
        # once either way (it has no timestamps to measure).
        options = {"protocol_whitelist": LIVE_PROTOCOLS, "fpsprobesize": "0"}
        if carries_flv(url):
            # An FLV stream's header cannot say which tracks will come (FFmpeg's RTMP client always announces audio
            # and video), so FFmpeg reads on for `analyzeduration` (5 s by default) waiting for an audio track that a
            # video-only camera never sends: HTTP-FLV at 30 fps opened after 5.0 s and 151 frames, all but the newest
            # then dropped (measured). 1 s of stream is enough for its video track (the servers' GOP caches start
            # at a key frame, whose SPS gives the size); a camera with an AAC track opened after 0.67 s (measured).
            options["analyzeduration"] = str(FLV_ANALYZE_US)
        rtsp = url.lower().startswith(("rtsp://", "rtsps://"))
        if rtsp:
            # RTP over the RTSP connection, not UDP: a lost UDP packet smears every frame until the next key frame.
            # OpenCV's reader (Ultralytics') asks for TCP too unless OPENCV_FFMPEG_CAPTURE_OPTIONS says otherwise.
            # (FFmpeg's "tcp+udp" tries UDP first, so a camera that serves both would be read over UDP.)
            options["rtsp_transport"] = "tcp"
            # RTP gives a frame's presentation time, not its decoding time, which FFmpeg works out only once it has
            # guessed the decoder's reordering delay from 7 decoded H.264 frames; until then it read on, the first
            # timestamp not known (`max_ts_probe`: up to 50 packets). Nothing here needs it (frames are timed on
            # arrival): the stream opens on its first frame.
            options["max_ts_probe"] = "0"
            # Each RTP packet as it came, not through FFmpeg's parser, which holds every frame until the next one
            # begins: H.264 and H.265 are joined by detector/runtime/rtp_video.py, a frame interval sooner.
            options["fflags"] = "+noparse"
        self._bytes, ts = self._share(url, keep_all)
        if ts:
            # MPEG-TS as its PES packets come, not through FFmpeg's parser, which holds each frame one interval more
            # (detector/runtime/ts_video.py).
            options["fflags"] = "+noparse"
            # FFmpeg's MPEG-TS demuxer probes an AAC or MPEG audio track's packets (ADTS or LATM?) before it trusts
            # the track's type, and the stream does not open until it has: 5 AAC packets, 0.27 s of a camera's
            # stream with audio (0.04 s without). The video's type is never probed; the audio is not read here.
            options["max_probe_packets"] = "1"
        try:
            self._container = self._open(url if self._bytes is None else self._bytes, options)
        except BaseException:
            if self._bytes is not None:
                self._bytes.close()
            raise
        if not self._container.streams.video:
            self._close_container()
            raise InvalidInputError(f"{self.name}: the stream has no video")
        self._stream = self._container.streams.video[0]
        context = self._stream.codec_context
        rate = self._stream.average_rate or context.framerate or self._stream.guessed_rate
        self.info = VideoInfo(float(rate) if rate else DEFAULT_FPS, 0, context.width, context.height)
        # An HTTP MJPEG stream declares no rate (FFmpeg assumes 25 fps): `measured_fps` then says what came.
        self.rate_declared = bool(self._stream.average_rate or context.framerate)
        self._arrivals: deque[float] = deque(maxlen=RATE_WINDOW)  # the latest frames' `time_s`, for the rate
        self._on_every_frame = on_every_frame
        self._reduce_to = None if on_every_frame else reduce_to
        lowres = self._lowres = lowres_for(context.width, context.height, self._reduce_to)
        mpegts = self._container.format.name == "mpegts"
        # Read parser-less: an RTSP camera's H.264 or H.265 NAL units joined for the decoder (rtp_video.py), its MJPEG
        # or VP8 pictures as they come; MPEG-TS's PES packets as they come while each begins a picture; anything else
        # split by the codec's own parser here (ts_video.py), as FFmpeg's reader would have. (An RTSP camera of
        # another codec was opened a second time, through FFmpeg's parser: one more handshake at the start, and a
        # camera may take one connection only.)
        self._units: Units | None = None
        if rtsp:
            self._units = parserless(context.name)
            if self._units is None and context.name not in WHOLE_PICTURES:
                self._units = PesPictures(context, mpegts=False)
        if ts:
            self._units = PesPictures(context, mpegts)
        # An MPEG-TS stream's PES packets (H.264, H.265, MPEG-2, MPEG-4 Part 2), an MJPEG camera's JPEGs, as soon as
        # each is complete; else FFmpeg's demuxer reads on.
        self._split: Splits | None = None
        if self._bytes is not None:
            if mpegts and context.name in PES_PICTURES:
                self._split = PesPackets(self._stream.id)
            elif self._container.format.name == "mpjpeg":
                self._split = JpegParts()
            else:
                self._bytes.let_go()
        decoder = {"lowres": str(lowres)} if lowres else {}
        if rtsp and self._units is not None and context.name == "h264":
            # H.264's decoder then gives a frame out once its last slice is in, not when the next frame begins.
            decoder["flags2"] = "+chunks"
        if decoder:
            context.options = decoder
        # Only the frames taken are decoded where no frame refers to another (and nothing records every frame).
        self._packets_only = bool(context.codec.intra_only) and on_every_frame is None
        self._stop = threading.Event()
        self._newest = _Newest(keep_all, self._stop)
        self.received = self.damaged = 0
        self.started = started  # what `time_s` counts from (0: when reading starts)
        self._reader = threading.Thread(target=self._read, name="live-reader", daemon=True)

    def _open(self, source: str | SharedBytes, options: dict[str, str], format: str | None = None) -> Any:
        """The container of `source` (a URL, or the bytes read from one), or InvalidInputError saying why not. An RTSP
        camera that serves RTP over UDP only is asked again over UDP (`options` then says so, for a later opening)."""
        import av

        timeout = (self.timeout_s, self.timeout_s)
        try:
            try:
                return av.open(source, format=format, timeout=timeout, options=options)
            except av.FFmpegError as exc:
                # A camera that serves RTP over UDP only answers SETUP with 461, which FFmpeg gives as this errno:
                # asked again over UDP (read then, frames broken where packets are lost, rather than not at all).
                if options.get("rtsp_transport") != "tcp" or exc.errno != errno.EPROTONOSUPPORT:
                    raise
                log.warning(
                    "%s: the camera sends RTP over UDP only; read over UDP (a lost packet breaks frames)", self.name
                )
                options["rtsp_transport"] = "udp"
                return av.open(source, timeout=timeout, options=options)
        except av.ProtocolNotFoundError:  # srt:// with PyAV's wheels, built without libsrt
            raise InvalidInputError(
                f"{self.name}: cannot open the stream (this FFmpeg, PyAV's, was built without the "
                f"{self.name.partition('://')[0].lower()} protocol)"
            ) from None
        except av.FFmpegError as exc:
            raise InvalidInputError(f"{self.name}: cannot open the stream ({_why(exc)})") from None

    @property
    def dropped(self) -> int:
        """Frames received that the detector never took (it was busy with an earlier one)."""
        return self._newest.dropped

    @property
    def measured_fps(self) -> float | None:
        """Frames received a second, from the latest arrivals (`steady_rate`); None before two frames."""
        return steady_rate(list(self._arrivals))

    def frames(self) -> Iterator[LiveFrame]:
        """The newest frame received, each time one is asked for, until the stream stops (StreamEnded). Reading
        starts at the first call."""
        import av

        if self._reader.ident is None:  # not started yet (a second call goes on reading, never restarts it)
            self.started = self.started or time.monotonic()
            self._reader.start()
        while True:
            number, item, arrived = self._newest.take()
            if self._packets_only:
                try:
                    decoded = self._stream.codec_context.decode(item)  # (a parser's packet knows no stream)
                except av.InvalidDataError:  # a damaged picture: skipped, as players do; the next one follows
                    self.damaged += 1
                    continue
                if not decoded:
                    continue
                item = decoded[-1]
            if isinstance(item, np.ndarray):  # converted whole on the reading thread (a recording)
                yield LiveFrame(number, item, arrived, item.shape[1], item.shape[0])
                continue
            width, height = self._sent_size(item.width, self.info.width), self._sent_size(item.height, self.info.height)
            if round(float(getattr(item, "rotation", 0) or 0) / 90) % 2:  # shown turned a quarter (as `upright`)
                width, height = height, width
            yield LiveFrame(number, upright(item, self._reduce_to), arrived, width, height)

    def interrupt(self, reason: str) -> None:
        """End `frames` at its next wait for a frame (another thread asks this run to stop): StreamEnded(`reason`,
        clean)."""
        self._newest.end(StreamEnded(reason, clean=True))

    def _read(self) -> None:
        import av

        ended = StreamEnded("the stream ended", clean=True)
        try:
            for packet in self._video_packets():
                if self._stop.is_set():
                    return
                units = self._units.push(packet) if self._units is not None else (packet,)
                if self._packets_only:
                    for unit in units:
                        if unit.size:
                            self._deliver(unit)
                    continue
                for unit in units:
                    try:
                        decoded = self._stream.codec_context.decode(unit)
                    except av.InvalidDataError:
                        self.damaged += 1
                        continue
                    for frame in decoded:
                        self._deliver(frame)
        except av.ExitError:  # PyAV's read timeout
            ended = StreamEnded(f"no data for {self.timeout_s:g} s: the stream stalled", clean=False)
        except _NoVideo:
            ended = StreamEnded(f"no video for {self.timeout_s:g} s (other data still came): the stream stalled", False)
        except (av.FFmpegError, OSError) as exc:
            ended = StreamEnded(f"the stream broke off ({_why(exc)})", clean=False)
        except BaseException as exc:  # a recording that fails (a full disk): the run ends with it
            ended = StreamEnded(f"reading the stream failed ({exc})", clean=False)
        finally:
            self._newest.end(ended)

    def _sent_size(self, decoded: int, opened: int) -> int:
        """A side of a frame as sent, from its `decoded` side (smaller by 2 ** lowres where decoded at a reduced
        size): the stream's (`opened`) where the frame is that size, else the frame's own (the stream changed size)."""
        return opened if opened and -(-opened >> self._lowres) == decoded else decoded << self._lowres

    def _video_packets(self) -> Iterator[Any]:
        """The video's packets, as `demux` gives them (an empty one last). `_NoVideo` once other data kept coming
        for `timeout_s` without one: a camera whose encoder stopped while its connection goes on (an audio track,
        MPEG-TS's other PIDs and tables) never stalled the read's timeout, and was waited for forever (measured: an
        RTSP camera's audio going on after its video stopped), so `--reconnect` never opened it again."""
        last = time.monotonic()
        for packet in self._split_packets() if self._split is not None else self._demuxed():
            if packet is not None:
                yield packet
                last = time.monotonic()  # from when reading goes on (a `keep_all` reader waits for the detector)
            elif time.monotonic() - last > self.timeout_s:
                raise _NoVideo

    def _demuxed(self) -> Iterator[Any]:
        """The container's packets: the video's, None for any other track's (so `_video_packets` sees time pass)."""
        index = self._stream.index
        for packet in self._container.demux():
            yield packet if packet.stream_index == index else None

    def _split_packets(self) -> Iterator[Any]:
        """The video's packets split here from the stream's first byte (MPEG-TS's PES packets, MJPEG's JPEGs), each
        as soon as it is complete, then an empty packet (the end), as `demux` gives them; None for bytes that
        complete none."""
        import av

        shared, split = self._bytes, self._split
        assert shared is not None and split is not None

        def payloads() -> Iterator[bytes]:
            for chunk in shared.rest():
                yield b""  # time passes (none of the payloads it completes may be the video's)
                yield from split.push(chunk)
            yield from split.flush()

        for payload in payloads():
            # An empty one (an MJPEG part with Content-Length: 0, a PES packet with only its header) would read as
            # the end: the decoder's flush, after which it decodes nothing more (a recording's stream then ended).
            yield av.Packet(payload) if payload else None
        yield av.Packet()

    def _share(self, url: str, keep_all: bool) -> tuple[SharedBytes | None, bool]:
        """The stream's bytes, read here for FFmpeg's demuxer to open it from and then split here, each frame as soon
        as its last byte is in, where FFmpeg's demuxer would wait for the next one to begin (live_bytes.py): MPEG-TS's
        PES packets (ts_demux.py), an HTTP MJPEG camera's JPEGs (mjpeg_parts.py); and whether it is MPEG-TS. Over
        HTTP only for a stream that starts as those do: any other (an HLS playlist, whose demuxer needs the URL) is
        opened again the usual way (None). A TCP camera may take one connection only: TCP and UDP are never
        reopened. Not for a file served over HTTP (`keep_all`) nor FLV."""
        scheme = url.partition("://")[0].lower()
        ts = scheme in ("tcp", "udp")
        if not ts and (scheme not in ("http", "https") or carries_flv(url) or keep_all):
            return None, False
        raw = {"protocol_whitelist": LIVE_PROTOCOLS, "raw_packet_size": str(RAW_PACKET_BYTES)}
        shared = SharedBytes(self._open(url, raw, "data"))
        if ts:  # (whatever it carries: FFmpeg's demuxer says, and reads on where it is not MPEG-TS)
            return shared, True
        starts = self._peek(shared)
        if starts is not None:
            return shared, starts == "mpegts"
        shared.close()
        return None, False

    def _peek(self, shared: SharedBytes) -> str | None:
        """What the stream's first bytes look like: "mpegts" (a TS packet's sync byte, again 188 bytes on),
        "multipart" (a boundary line), else None. InvalidInputError when nothing comes."""
        import av

        try:
            first = shared.peek()
        except av.FFmpegError as exc:
            shared.close()
            raise InvalidInputError(f"{self.name}: cannot open the stream ({_why(exc)})") from None
        if begins_ts(first):
            return "mpegts"
        return "multipart" if first.lstrip().startswith(b"--") else None

    def _deliver(self, item: Any) -> None:
        number, self.received = self.received, self.received + 1
        arrived = time.monotonic() - self.started
        self._arrivals.append(arrived)
        if self._on_every_frame is not None:
            item = upright(item, None)
            self._on_every_frame(item, arrived)
        self._newest.put((number, item, arrived))

    def close(self) -> None:
        """Stop reading (the reader ends at its next packet, or at the read timeout) and close the connection."""
        self._stop.set()
        if self._reader.is_alive():
            self._reader.join(timeout=self.timeout_s + 1)
        if not self._reader.is_alive():  # never under a reader still in FFmpeg (the process ends it then)
            self._close_container()

    def _close_container(self) -> None:
        self._container.close()
        if self._bytes is not None:
            self._bytes.close()

    def __enter__(self) -> LiveStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _why(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc.__class__.__name__)
