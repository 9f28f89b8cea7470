"""Video in, frames out, annotated video back.

FFmpeg through PyAV decodes the frames (at the model's size where it can, `read_frames`); OpenCV probes the clip
(size, frame count) and writes annotated videos. Tracking (ByteTrack) is `detector.runtime.tracking`."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from detector.errors import ImageTooLargeError, InvalidInputError
from detector.runtime.display_order import display_ranks
from detector.runtime.preprocess import LetterboxInfo, halvings_for, letterbox_params

T = TypeVar("T")

# What OpenCV's FFmpeg may open for untrusted clips: local files only, and only these demuxers (MP4/MOV,
# Matroska/WebM, AVI). Without it, FFmpeg probes every format it knows: an HLS or concat playlist uploaded as a
# "video" makes it open the files (or URLs) the playlist names. OpenCV reads this variable on every open.
FFMPEG_CAPTURE_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
SAFE_FFMPEG_OPTIONS = "protocol_whitelist;file|format_whitelist;mov,matroska,webm,avi"


def restrict_ffmpeg() -> None:
    """Make every later OpenCV FFmpeg capture in this process use `SAFE_FFMPEG_OPTIONS` (the service calls it)."""
    os.environ[FFMPEG_CAPTURE_ENV] = SAFE_FFMPEG_OPTIONS


def sniff_container(head: bytes) -> str | None:
    """The file suffix of the video container these first bytes start (".mp4" for MP4/MOV/3GP, ".mkv" for
    Matroska/WebM, ".avi" for AVI), or None when they start none of those. At least 12 bytes are needed."""
    if len(head) >= 12:
        if head[4:8] == b"ftyp":
            return ".mp4"
        if head[:4] == b"\x1a\x45\xdf\xa3":
            return ".mkv"
        if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
            return ".avi"
    return None


class NotAVideoError(InvalidInputError):
    """The bytes are not a container/codec OpenCV's FFmpeg can open (the service answers 415)."""


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    frames: int  # as the container reports it (0 when unknown)
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps if self.fps > 0 else 0.0


def probe_video(path: str | Path, max_pixels: int = 0) -> VideoInfo:
    """Open `path` with OpenCV and read its stream properties; InvalidInputError when it is not a readable video,
    ImageTooLargeError when its frames (as the stream header declares them) have more than `max_pixels` (0: no
    limit), checked before a frame is decoded."""
    import cv2

    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not cap.isOpened():
            raise NotAVideoError(f"{Path(path).name}: not a video OpenCV can read (MP4, AVI, MKV, WebM, MOV)")
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        if max_pixels and width * height > max_pixels:
            raise ImageTooLargeError(
                f"the video's frames are {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
            )
        for _ in range(MAX_DAMAGED_IN_A_ROW):  # past damaged first frames, as `read_frames` goes past them
            ok, frame = cap.read()
            if ok and frame is not None:
                break
        else:
            raise InvalidInputError(f"{Path(path).name}: the video has no decodable frame")
        if max_pixels and frame.shape[0] * frame.shape[1] > max_pixels:  # a header that understated the size
            raise ImageTooLargeError(f"the video's frames have more than {max_pixels} pixels (the limit)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        return VideoInfo(
            fps=fps if fps > 0 else 30.0, frames=max(frames, 0), width=frame.shape[1], height=frame.shape[0]
        )
    finally:
        cap.release()


SKIPPED: npt.NDArray[np.uint8] = np.zeros((0, 0, 3), np.uint8)
# A packet FFmpeg could not decode (damaged or cut-off data): `read_frames` yields this in its place and goes on.
DAMAGED: npt.NDArray[np.uint8] = np.zeros((0, 0, 3), np.uint8)
# Damaged packets in a row after which the rest of a clip is taken as undecodable (an error): a file of garbage
# ends early instead of being tried packet by packet to its end (about 4 s of a 25 fps MJPEG clip).
MAX_DAMAGED_IN_A_ROW = 100
_FFMPEG_MIN_PIXEL_LIMIT = 1 << 20  # the pixels of a frame read with keep_skipped=False

# What PyAV's FFmpeg may open: the same rule as SAFE_FFMPEG_OPTIONS (PyAV does not read OpenCV's variable).
SAFE_AV_OPTIONS = {"protocol_whitelist": "file", "format_whitelist": "mov,matroska,webm,avi"}


class Frame(NamedTuple):
    """One frame of a clip, as `read_frames` gives it."""

    number: int  # its place in the clip, 0-based (a damaged packet keeps its frame's place)
    pixels: npt.NDArray[np.uint8]  # RGB, upright; or SKIPPED, or DAMAGED
    run: bool  # to be processed (every vid_stride-th frame)
    time_s: float  # when it is shown, from the clip's start: its timestamp; index / frame rate where it has none


def check_outputs(source: Path | None, *outputs: Path | None) -> None:
    """Refuse an output that is the clip itself (a link to it too) or another output: the writer would truncate the
    clip before a frame of it was read (`--save clip.mp4` on clip.mp4 left 5 KB of a 37 KB clip, and an error).
    `source` None: a live stream's outputs, checked against each other only."""
    seen = [] if source is None else [source]
    for output in outputs:
        if output is None:
            continue
        for other in seen:
            if output.resolve() == other.resolve() or (output.exists() and other.exists() and output.samefile(other)):
                what = "the clip itself" if other is source else f"another output ({other})"
                raise InvalidInputError(f"{output} is {what}: write to another file")
        seen.append(output)


def lowres_for(width: int, height: int, reduce_to: tuple[int, int] | None) -> int:
    """FFmpeg's `lowres` for a `width`x`height` stream that a letterbox into `reduce_to=(h, w)` (a model's input)
    still gets every needed pixel from: 0 without `reduce_to`, else the same halvings as a JPEG's DCT scaling, in
    whichever orientation needs fewer (the stream may be shown turned a quarter, known only from its first frame)."""
    if reduce_to is None or width <= 0 or height <= 0:
        return 0
    return min(halvings_for((height, width), reduce_to), halvings_for((width, height), reduce_to))


def read_frames(
    path: str | Path,
    vid_stride: int = 1,
    max_pixels: int = 0,
    keep_skipped: bool = True,
    reduce_to: tuple[int, int] | None = None,
) -> Iterator[Frame]:
    """Every frame of the video as a `Frame` (number, RGB pixels, run, time); `run` is True for every `vid_stride`-th
    frame (0, N, 2N...). All frames are yielded so a writer can keep the frame count; decoding stops at the end.
    A frame's time is its timestamp, so a variable-frame-rate clip (a phone's, in low light) gets the times a player
    shows; index / fps, which the lines said before, was 0.9 s off mid-clip in a 30-then-10 fps clip.

    With `keep_skipped=False` the frames in between come as the empty `SKIPPED` array, never converted to RGB;
    in an intra-only stream (MJPEG, where no frame depends on another) they are not even decoded, only demuxed.
    With `reduce_to=(h, w)` (a model's input) a codec that decodes at reduced size (FFmpeg's `lowres`: MPEG-4
    Part 2, which OpenCV writes as mp4v, MJPEG, MPEG-1/2, H.263; not H.264, HEVC, VP9 or AV1) decodes at the
    smallest of 1/2, 1/4, 1/8 that a letterbox into it still needs (`lowres_for`), as JPEGs do
    (`detector.runtime.images`): a 720p mp4v frame for a 256 px model decodes at 320x180 in half the time. Then,
    whatever the codec, the frame is shrunk to the letterbox's size before it becomes RGB (`fit_size`; H.264's
    720p frame to 256x144 for 256 px), so neither the conversion nor the letterbox touches the full frame. Frames
    are then smaller than the source: map boxes back with its size (`DecodedImage.to_sent`). Frames come upright:
    a display matrix's quarter turns (a phone's portrait clip) are applied, as OpenCV's reader does.
    A frame of more than `max_pixels` at full size (0: no limit; a stream whose size changes mid-clip) is an
    ImageTooLargeError. A packet FFmpeg cannot decode (damaged data; the last, cut-off packet of a recording that
    stopped mid-write) comes as a Frame of DAMAGED pixels, in the place of the frame it held, and the frames after it
    follow, as players skip it (before, the first damaged frame ended the clip with an error, and every frame after
    it was lost). `MAX_DAMAGED_IN_A_ROW` damaged packets in a row, or a clip with none that decodes, are an
    InvalidInputError.
    PyAV (FFmpeg's own API), not OpenCV's capture, because only it sets decoder options and skips the decoding of
    single packets; `probe_video` still uses OpenCV."""
    import av

    if vid_stride < 1:
        raise InvalidInputError(f"vid_stride must be at least 1 (got {vid_stride})")
    try:
        container = av.open(str(path), options=SAFE_AV_OPTIONS)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise NotAVideoError(f"{Path(path).name}: not a readable video ({exc.__class__.__name__})") from None
    index = -1  # the last frame read
    try:
        if not container.streams.video:
            raise NotAVideoError(f"{Path(path).name}: the file has no video stream")
        stream = container.streams.video[0]
        context = stream.codec_context
        source_width = context.width  # as the stream declares it (the decoder reports the reduced one)
        lowres = lowres_for(source_width, context.height, reduce_to)
        options = {"lowres": str(lowres)} if lowres else {}  # FFmpeg lowers it to the codec's maximum (0 for H.264)
        if max_pixels:
            # A frame far over the limit is refused by FFmpeg before it is allocated (FFmpeg checks the coded size,
            # whatever `lowres` does); the exact limit is checked below, on each decoded frame. Without it a frame
            # larger than the stream declares (a size change mid-clip) was decoded first: a 12000x12000 MJPEG frame in a
            # 2.3 MB AVI took the reader from 96 to 305 MB (peak RSS). Twice the limit, and at least a megapixel,
            # because FFmpeg's MPEG-4 decoder holds its own scratch buffers to it too: a 64x64 mp4v clip needs 53760,
            # 320x240 125440 (measured).
            options["max_pixels"] = str(max(2 * max_pixels, _FFMPEG_MIN_PIXEL_LIMIT))
        context.options = options
        demux_only = vid_stride if not keep_skipped and context.codec.intra_only else 1
        # Inter-coded (H.264, HEVC...): the frames no other refers to are skipped when not needed. MP4/MOV and
        # Matroska store when each packet is shown; AVI does not (FFmpeg numbers its packets in stored order, B-frames
        # included), so there every frame is decoded.
        ranked_container = container.format.name.startswith(("mov", "matroska"))
        skip_nonref = vid_stride if not keep_skipped and demux_only == 1 and ranked_container else 1
        scale = 0  # scale: how much smaller than sent each frame decodes (0: not known yet)
        clock = _Clock(stream)
        for index, frame, pts in _decoded(container, stream, demux_only, skip_nonref, Path(path).name):
            time_s = clock.seconds(pts, index)
            if frame is DAMAGED:
                yield Frame(index, DAMAGED, False, time_s)
                continue
            run = index % vid_stride == 0
            if frame is None or (not run and not keep_skipped):
                yield Frame(index, SKIPPED, run, time_s)
                continue
            if not scale:  # `lowres` applies to the whole stream or not at all: the first frame says which
                scale = 2**lowres if frame.width < source_width else 1
            if max_pixels and frame.width * frame.height * scale * scale > max_pixels:
                raise ImageTooLargeError(f"frame {index} has more than {max_pixels} pixels (the limit)")
            yield Frame(index, upright(frame, reduce_to), run, time_s)
    except av.ArgumentError as exc:
        if max_pixels:  # EINVAL is what FFmpeg answers for a frame over `max_pixels` (damaged data: INVALIDDATA)
            which = "the first frame" if index < 0 else f"a frame after frame {index}"
            raise ImageTooLargeError(
                f"{Path(path).name}: {which} has more than {max_pixels} pixels (the limit), or cannot be decoded "
                f"({exc.strerror})"
            ) from None
        raise InvalidInputError(f"{Path(path).name}: the video cannot be decoded ({exc})") from None
    except av.FFmpegError as exc:
        raise InvalidInputError(f"{Path(path).name}: the video cannot be decoded ({exc})") from None
    finally:
        container.close()


class _Clock:
    """Seconds from a stream's start for a timestamp (in the stream's time base); index / frame rate without one."""

    def __init__(self, stream: Any) -> None:
        # A float, not PyAV's Fraction: 0.15 instead of 1.35 us a frame (timeit), and exact to well under 1 us.
        self.time_base = float(stream.time_base or 0)
        self.start: int | None = stream.start_time  # None: the first timestamp seen
        rate = stream.average_rate or stream.guessed_rate
        self.rate = float(rate) if rate else 0.0

    def seconds(self, pts: int | None, index: int) -> float:
        if pts is None or not self.time_base:
            return index / self.rate if self.rate else 0.0
        if self.start is None:
            self.start = pts
        return max(0.0, (pts - self.start) * self.time_base)


def _decoded(
    container: Any, stream: Any, demux_only: int, skip_nonref: int, name: str
) -> Iterator[tuple[int, Any, int | None]]:
    """`(index, frame, timestamp)` for every frame of `stream`, packet by packet (what `container.decode` does),
    with DAMAGED for a packet whose data FFmpeg rejects, counted as a frame: in MP4, Matroska and AVI a packet holds
    one frame, so the frames after it keep their index (and time). With `demux_only` N > 1 (an intra-only stream,
    each packet one whole picture, none referring to another) the packets between two N-th ones come as frame None:
    demuxed, never decoded. With `skip_nonref` N > 1 the decoder skips the non-reference frames (no other frame is
    predicted from them: most B-frames) that are not among every N-th shown, and those too come as frame None, in
    their place: each packet's place in the showing order is known before it is decoded (`display_ranks`)."""
    import av

    context = stream.codec_context
    packets = container.demux(stream)
    ranked = display_ranks(packets) if skip_nonref > 1 else ((packet, None) for packet in packets)
    index = 0  # the next frame's
    in_a_row = damaged = decoded = 0
    places: dict[int, int] = {}  # timestamp -> place shown, of the packets sent to the decoder
    held: dict[int, tuple[Any, int | None]] = {}  # place -> (None or DAMAGED, timestamp): packets not shown yet

    def up_to(place: int) -> Iterator[tuple[int, Any, int | None]]:
        """The frames skipped or damaged before `place` (the decoder shows frames in order: those never come); one
        that was to be decoded and never came is damaged."""
        nonlocal index
        while index < place:
            frame, pts = held.pop(index, (None, None))
            if pts is not None:
                places.pop(pts, None)  # a skipped packet's: no frame will claim it
            yield index, DAMAGED if frame is None and index % skip_nonref == 0 else frame, pts
            index += 1

    for packet, place in ranked:
        if demux_only > 1 and packet.size and index % demux_only:
            yield index, None, packet.pts
            index += 1
            continue
        if place is not None:
            context.skip_frame = "DEFAULT" if place % skip_nonref == 0 else "NONREF"
            places[packet.pts] = place
            held[place] = None, packet.pts  # until its frame comes out
        elif skip_nonref > 1 and packet.size:
            context.skip_frame = "DEFAULT"
        try:
            frames = packet.decode()  # a packet of size 0 (the end) drains the decoder
        except av.InvalidDataError as exc:
            in_a_row, damaged = in_a_row + 1, damaged + 1
            if in_a_row >= MAX_DAMAGED_IN_A_ROW:
                raise InvalidInputError(
                    f"{name}: the video cannot be decoded from frame {index + 1 - in_a_row} on ({in_a_row} damaged "
                    f"packets in a row: {exc.strerror})"
                ) from None
            if place is not None:
                held[place] = DAMAGED, packet.pts
                continue
            yield index, DAMAGED, packet.pts
            index += 1
            continue
        for frame in frames:
            in_a_row, decoded = 0, decoded + 1
            place = places.pop(frame.pts, index)  # outside skipping: none, the next index
            held.pop(place, None)
            yield from up_to(place)
            yield index, frame, frame.pts
            index += 1
    yield from up_to(max(held, default=-1) + 1)  # the last frames skipped (a B-frame or two before the end)
    if damaged and not decoded:
        raise InvalidInputError(f"{name}: no frame of the video can be decoded ({damaged} damaged packets)")


def fit_size(width: int, height: int, reduce_to: tuple[int, int] | None) -> tuple[int, int] | None:
    """The (width, height) a `width`x`height` frame shrinks to for a letterbox into `reduce_to=(h, w)`: the
    letterbox's own scaled size, each side rounded up to even (4:2:0 chroma is half of it); None when nothing
    shrinks (no `reduce_to`, or the frame is no larger than that)."""
    if reduce_to is None or width <= 0 or height <= 0:
        return None
    (new_w, new_h), _ = letterbox_params((height, width), reduce_to)
    size = (new_w + 1) // 2 * 2, (new_h + 1) // 2 * 2
    return size if size[0] < width and size[1] < height else None


def upright(frame: Any, reduce_to: tuple[int, int] | None) -> npt.NDArray[np.uint8]:
    """The frame as RGB as it is shown: turned by its display matrix (a phone's portrait clip is stored landscape,
    with a quarter turn to show it), as OpenCV's reader and players do, so the frame, the clip's size (OpenCV's
    probe) and the boxes agree; shrunk for `reduce_to` before the turn. Before, such a clip was detected lying on
    its side and its boxes stretched from 320x240 to 240x320."""
    import cv2

    turns = round(float(getattr(frame, "rotation", 0) or 0) / 90) % 4  # counterclockwise quarter turns
    if turns % 2 == 0:
        size = fit_size(frame.width, frame.height, reduce_to)
    else:
        shown = fit_size(frame.height, frame.width, reduce_to)
        size = None if shown is None else (shown[1], shown[0])
    rgb = _rgb(frame, size)
    if turns == 0:
        return rgb
    code = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_CLOCKWISE}[turns]
    return np.asarray(cv2.rotate(rgb, code), np.uint8)


def _rgb(frame: Any, size: tuple[int, int] | None) -> npt.NDArray[np.uint8]:
    """The frame as RGB, shrunk to `size` (width, height) first when given. 4:2:0 YUV (nearly every camera and
    encoder) through OpenCV on the planes: each plane resized, then converted at the small size. Bilinear, as the
    letterbox resizes (and Ultralytics' does, in training too), so a shrunk frame gets the pixels the letterbox
    would have made. Measured per 720p frame here: PyAV's own conversion (swscale) 4 ms, OpenCV's 0.35 ms plus the
    letterbox's resize 0.14 ms, planes shrunk to 256x144 then converted 0.1 ms."""
    import cv2

    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        # Y (h rows), then U and V (h/4 rows each, w/2 wide, stacked as w-wide rows); shrunk from the decoder's own
        # planes, not from `to_ndarray()`'s copy of them (0.13 of 0.20 ms a 720p frame for 256 px, measured).
        yuv = frame.to_ndarray() if size is None else _shrunk_i420(frame, size)
        return np.asarray(cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420), np.uint8)
    rgb = np.ascontiguousarray(frame.to_ndarray(format="rgb24"), np.uint8)
    return rgb if size is None else np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR), np.uint8)


def _shrunk_i420(frame: Any, size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """A 4:2:0 frame's planes, read where the decoder left them (rows padded to `line_size`), each resized to `size`
    (even; chroma half of it), as one I420 buffer."""
    import cv2

    w, h = size
    shrunk = []
    for i, plane in enumerate(frame.planes):
        rows = np.frombuffer(plane, np.uint8, plane.height * plane.line_size).reshape(plane.height, plane.line_size)
        to = (w // 2, h // 2) if i else (w, h)
        shrunk.append(cv2.resize(rows[:, : plane.width], to, interpolation=cv2.INTER_LINEAR).reshape(-1))
    return np.asarray(np.concatenate(shrunk).reshape(h * 3 // 2, w), np.uint8)


def read_ahead(items: Iterator[T], depth: int = 4) -> Iterator[T]:
    """`items` (e.g. `read_frames`), produced on a thread of their own up to `depth` ahead, so decoding the next
    frames overlaps the caller's work on this one: FFmpeg's decode and the colour conversion release the GIL, and
    on a 2-core machine they then run beside inference instead of before it. Errors reach the caller in order;
    closing the returned generator (or leaving its loop) stops the reader and closes `items`."""
    buffer: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(entry: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                buffer.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there
            put(("error", exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    reader = threading.Thread(target=produce, name="read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            kind, value = buffer.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        reader.join(timeout=10)


class VideoWriter:
    """MP4 (mp4v) or AVI (MJPG) by suffix, at the source's fps and size; frames are RGB. A frame of another size (a
    stream whose size changes mid-clip) is scaled to the writer's, as a player shows it: OpenCV's writer silently
    drops such a frame (a 15-frame clip switching size twice was written as 5 frames)."""

    def __init__(self, path: str | Path, fps: float, width: int, height: int) -> None:
        import cv2

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fourcc = "MJPG" if path.suffix.lower() == ".avi" else "mp4v"
        self.size = (width, height)
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, self.size)
        if not self._writer.isOpened():
            raise InvalidInputError(f"cannot write a video to {path} (use a .mp4 or .avi name)")
        self.frames = 0

    def fit(self, frame_rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """`frame_rgb` at the writer's size (itself when it is): draw boxes given in the clip's size on this."""
        return _fit(frame_rgb, self.size)

    def write(self, frame_rgb: npt.NDArray[np.uint8]) -> None:
        import cv2

        self._writer.write(cv2.cvtColor(np.ascontiguousarray(self.fit(frame_rgb)), cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        self._writer.release()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StampedVideoWriter:
    """A live stream's recording: MP4, MKV or MOV (MPEG-4 Part 2, as `VideoWriter`'s mp4v) in which each frame keeps
    the time it is given (when it arrived), so it plays at the camera's pace whatever rate the stream declares (an
    HTTP MJPEG camera declares none; FFmpeg assumes 25) or keeps (cameras lower their rate in the dark), and the gap
    of a reconnection shows as the last frame held. Through PyAV: OpenCV's writer gives every frame one duration.
    Frames are RGB, fitted into the first one's size with their aspect kept (`fit`)."""

    SUFFIXES = (".mp4", ".mkv", ".mov")  # containers with a time for each frame (AVI has one rate)
    TIME_BASE = 1000  # frame times in ms (MPEG-4 Part 2 takes at most 65535 ticks a second)

    def __init__(self, path: str | Path, width: int, height: int) -> None:
        import av

        path = Path(path)
        check_stamped_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.size = (width, height)
        # Written so that a process killed mid-recording (SIGKILL, the OOM killer, a power cut) leaves a playable
        # file up to its last key frame: each packet goes to the file as it is made (`flush_packets`), and an MP4 is
        # fragmented at each key frame (`movflags`) instead of needing its index written at the close (before, such a
        # file had only its 44-byte header and played nothing).
        options = {"flush_packets": "1"}
        if path.suffix.lower() in (".mp4", ".mov"):
            options["movflags"] = "+frag_keyframe+empty_moov+default_base_moof"
        self._container = av.open(str(path), "w", container_options=options)
        self._stream: Any = self._container.add_stream("mpeg4", rate=25)  # a nominal rate: each frame has its time
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "yuv420p"
        self._stream.codec_context.time_base = Fraction(1, self.TIME_BASE)
        # A constant quantizer (4 of 31), not the encoder's default 200 kbit/s that smears a 720p frame.
        self._stream.codec_context.options = {"flags": "+qscale", "global_quality": str(4 * 118)}  # FF_QP2LAMBDA
        self._first: float | None = None
        self._last_pts = -1
        self.frames = 0

    def fit(self, frame_rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """`frame_rgb` at the recording's size (itself when it is), its aspect kept: a live stream may change size
        mid-recording (a phone turned, a camera's profile changed), and a portrait frame squeezed into a landscape
        recording would be unrecognisable; it gets black bars instead. Boxes go on the frame before this."""
        return letterboxed_frame(frame_rgb, self.size)[0]

    def write(self, frame_rgb: npt.NDArray[np.uint8], time_s: float) -> None:
        """Write a frame shown from `time_s` (seconds on any clock: the first frame is the recording's 0)."""
        import av

        if self._first is None:
            self._first = time_s
        # Strictly increasing: two frames within the same ms (a burst read at the start) each get their own tick.
        pts = self._last_pts = max(self._last_pts + 1, round((time_s - self._first) * self.TIME_BASE))
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(self.fit(frame_rgb)), format="rgb24")
        frame.pts, frame.time_base = pts, Fraction(1, self.TIME_BASE)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        finally:
            self._container.close()

    def __enter__(self) -> StampedVideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_stamped_path(path: Path) -> None:
    """InvalidInputError unless `path` names a container `StampedVideoWriter` writes."""
    if path.suffix.lower() not in StampedVideoWriter.SUFFIXES:
        raise InvalidInputError(
            f"cannot record a live stream to {path.name}: use {', '.join(StampedVideoWriter.SUFFIXES)} "
            "(each frame keeps the time it arrived; AVI has one rate for all)"
        )


def letterboxed_frame(
    frame_rgb: npt.NDArray[np.uint8], size: tuple[int, int]
) -> tuple[npt.NDArray[np.uint8], LetterboxInfo | None]:
    """`frame_rgb` fitted into `size` (width, height) with its aspect kept, black bars around it, and how its pixels
    map there (`postprocess.letterboxed_boxes`); itself and None when it is that size."""
    if (frame_rgb.shape[1], frame_rgb.shape[0]) == size:
        return frame_rgb, None
    import cv2

    (w, h), placed = letterbox_params(frame_rgb.shape[:2], (size[1], size[0]))
    left, top = placed.pad
    out = np.zeros((size[1], size[0], 3), np.uint8)
    out[top : top + h, left : left + w] = cv2.resize(frame_rgb, (w, h), interpolation=cv2.INTER_AREA)
    return out, placed


def _fit(frame_rgb: npt.NDArray[np.uint8], size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    import cv2

    if (frame_rgb.shape[1], frame_rgb.shape[0]) == size:
        return frame_rgb
    return np.asarray(cv2.resize(frame_rgb, size, interpolation=cv2.INTER_AREA), np.uint8)
