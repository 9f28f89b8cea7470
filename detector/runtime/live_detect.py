"""A live stream through a detector: the loop `detector predict rtsp://...` runs (detector/runtime/live.py reads).

Each turn takes the newest frame received, detects it (one frame a call, with the latency model: a camera wants each
answer soon, and a frame that waited is dropped anyway), tracks it and reports it. The run ends at the stream's end,
at `max_frames` detected frames, on Ctrl-C (a normal way to stop watching a camera: the recording is closed and
playable, the summary printed), or with an error when the stream stalls or breaks off (after the frames before it);
with `reconnect`, a stream that ends, stalls or breaks off is opened again instead (a camera rebooting, Wi-Fi).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from detector.errors import InvalidInputError
from detector.runtime.classes import filter_classes
from detector.runtime.detections import Detections
from detector.runtime.detector import Detector
from detector.runtime.images import DecodedImage
from detector.runtime.live import LiveFrame, LiveStream, StreamEnded
from detector.runtime.live_recording import LiveRecording, Saving, Segment
from detector.runtime.postprocess import letterboxed_boxes, scale_boxes
from detector.runtime.preprocess import letterbox_params
from detector.runtime.tiling import Tiling
from detector.runtime.tracking import Tracker
from detector.runtime.video import VideoInfo, letterboxed_frame
from detector.runtime.video_detect import OnFrame, frames_detector

log = logging.getLogger("detector.runtime.live_detect")
MAX_RECONNECT_WAIT_S = 30.0  # the longest wait between two tries to open a stream again


@dataclass(frozen=True)
class Reading:
    """How a live stream is read."""

    timeout_s: float = 10.0  # the longest wait to connect, then for data
    keep_all: bool = False  # no frame dropped: the stream waits for the detector (a video file served over HTTP)
    # When the stream ends, stalls or breaks off, open it again (waiting 1, 2, 4... up to MAX_RECONNECT_WAIT_S
    # seconds between failed tries) and go on, frames numbered and timed on from where they were, tracks and the
    # recording kept: the run then ends only at max_frames or Ctrl-C. The first open must succeed (a wrong URL
    # fails at once). Never for `keep_all`: a file's end is its end.
    reconnect: bool = False


class Stop:
    """Asks `detect_live` runs on other threads to stop, as Ctrl-C stops one on the main thread (a signal reaches only
    the main thread): `request` ends each run's wait for a frame at once, and its wait to reconnect."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._streams: set[LiveStream] = set()
        self.reason = ""

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def request(self, reason: str) -> None:
        """Stop every run watching this; `reason` is their `ended` (the first request's stands)."""
        with self._lock:
            self.reason = self.reason or reason
            self._event.set()
            for stream in self._streams:
                stream.interrupt(self.reason)

    def watch(self, stream: LiveStream) -> None:
        with self._lock:
            self._streams.add(stream)
            if self._event.is_set():
                stream.interrupt(self.reason)

    def unwatch(self, stream: LiveStream) -> None:
        with self._lock:
            self._streams.discard(stream)

    def wait(self, seconds: float) -> bool:
        """Sleep `seconds`, or less when a stop is requested meanwhile (then True)."""
        return self._event.wait(seconds)


@dataclass(frozen=True)
class LiveRun:
    info: VideoInfo  # the stream's size and declared rate
    received: int  # frames that arrived
    processed: int  # frames detected
    dropped: int  # arrived while an earlier one was detected, never taken
    damaged: int  # could not be decoded (skipped)
    written: int  # frames in the recording (`save`), its segments together
    ended: str  # why the run stopped
    clean: bool  # the stream's end, max_frames or Ctrl-C; False when it stalled or broke off
    reconnects: int = 0  # times the stream was opened again (`reconnect`)
    segments: tuple[Segment, ...] = ()  # the recording's files still on disk (one without segments)
    measured_fps: float | None = None  # frames received a second, for a stream that declares no rate (HTTP MJPEG)


def detect_live(
    det: Detector,
    url: str,
    *,
    track: bool = False,
    save: Path | Saving | None = None,
    classes: frozenset[int] | None = None,
    predict: Mapping[str, Any] | None = None,
    tiles: Tiling | None = None,
    reading: Reading = Reading(),
    max_frames: int = 0,
    on_frame: OnFrame | None = None,
    on_progress: Callable[[], Any] | None = None,
    stop: Stop | None = None,
) -> LiveRun:
    """Detect (and with `track` track) the newest frame of the live stream at `url`, again and again, until it ends (or
    `max_frames` frames are detected, 0: no limit, or Ctrl-C). With `save` (.mp4, .mkv, .mov; a `Saving` for segments),
    every frame received is written with the newest boxes at the time it arrived (`LiveRecording`). `on_frame` gets each
    detected frame's answer (index: the frame's number among those received; time: when it arrived; boxes in the
    stream's size, `in_stream`), `on_progress` each
    detected frame. `predict`: keyword arguments of `Detector.predict`. `reading`: how the stream is read (`Reading`).
    `stop`: how another thread stops this run (`Stop`; on the main thread Ctrl-C does)."""
    if max_frames < 0:
        raise InvalidInputError(f"max_frames must be 0 (no limit) or more (got {max_frames})")
    recording = LiveRecording(Saving(save) if isinstance(save, Path) else save)
    stop = stop or Stop()
    processed = 0

    def open_stream(started: float = 0.0) -> LiveStream:
        reduce_to = None if tiles else det.input_shape
        record = recording.record if save else None
        return LiveStream(url, reading.timeout_s, reduce_to, record, reading.keep_all, started)

    def answer(frame: LiveFrame, number: int) -> str:
        """Detect, track and report a frame (`number`: among all received); why the run ends after it, or ""."""
        nonlocal processed
        dets, shown = _detected(frame, info, detect_frames, tiles is not None, classes)
        # The frame's number among those received: the frames dropped since the last answer are predicted over.
        track_ids = tracker.update(shown, number) if tracker else None
        recording.last = dets, track_ids  # drawn on the frame at its own size, then fitted into the recording
        processed += 1
        if on_frame:
            on_frame(number, frame.time_s, shown, track_ids)
        if on_progress:
            on_progress()
        if max_frames and processed >= max_frames:
            return f"{max_frames} frames detected (max_frames)"
        return stop.reason if stop.requested else ""  # checked here too: where frames keep coming, no wait ends

    # A backend's first call is slow (OpenVINO on the quick model: 375 ms, then 2-3 ms): made before the stream opens,
    # since a camera's frames that come meanwhile are dropped (7 of a 30 fps camera's first 8 before, 3 now; the
    # first frame's own input shape, its aspect letterboxed, still costs about 125 ms once).
    det.warmup(runs=1)
    stream = open_stream()
    stop.watch(stream)
    info = stream.info
    tracker = Tracker(info.fps) if track else None
    ended, clean, reconnects = "", True, 0
    earlier = [0, 0, 0]  # frames received, dropped, damaged on the connections before this one
    try:
        detect_frames = frames_detector(det, predict or {}, tiles, info, stream.name)  # a tile too large: refused
        while not ended:
            try:
                for frame in stream.frames():
                    ended = answer(frame, earlier[0] + frame.number)
                    if ended:
                        break
            except StreamEnded as exc:
                if stop.requested or not reading.reconnect or reading.keep_all:
                    ended, clean = (stop.reason, True) if stop.requested else (exc.reason, exc.clean)
                    break
                earlier = [earlier[0] + stream.received, earlier[1] + stream.dropped, earlier[2] + stream.damaged]
                again = _next_connection(stream, exc.reason, open_stream, stop)
                if again is None:  # stopped while waiting to reconnect
                    ended = stop.reason
                    break
                stream = again
                reconnects += 1
    except KeyboardInterrupt as exc:  # Ctrl-C; or SIGTERM where the caller turns it into this (the CLI does)
        ended, clean = f"stopped ({str(exc) or 'Ctrl-C'})", True
    finally:
        stream.close()
        stop.unwatch(stream)
        recording.close()
    received = earlier[0] + stream.received
    if not clean:
        log.warning("%s: %s after %d frames received", stream.name, ended, received)
    dropped, damaged = earlier[1] + stream.dropped, earlier[2] + stream.damaged
    written, segments = recording.written, tuple(recording.kept())
    measured = None if stream.rate_declared else stream.measured_fps  # over the last connection
    return LiveRun(info, received, processed, dropped, damaged, written, ended, clean, reconnects, segments, measured)


def _detected(
    frame: LiveFrame,
    info: VideoInfo,
    detect_frames: Callable[[list[Any]], list[Detections]],
    tiled: bool,
    classes: frozenset[int] | None,
) -> tuple[Detections, Detections]:
    """`frame`'s boxes in its own pixels (where the recording draws them) and in the stream's size (`in_stream`)."""
    if tiled and (frame.width, frame.height) != (info.width, info.height):
        # Tiles are cut from the stream's size (the grid was checked against it when it opened): a frame of another
        # size is fitted into it first, so a camera switched below the tile's size goes on being detected (it ended
        # the run with the tile's error) and one switched above it costs no more tiles.
        fitted, placed = letterboxed_frame(frame.pixels, (info.width, info.height))
        shown = filter_classes(detect_frames([fitted])[0], classes)
        own = replace(shown, xyxy=scale_boxes(shown.xyxy, placed)) if placed is not None and len(shown) else shown
        return own, shown
    found = detect_frames([frame.pixels])[0]
    own = filter_classes(DecodedImage(frame.pixels, frame.width, frame.height).to_sent(found), classes)
    return own, in_stream(own, frame, info)


def in_stream(dets: Detections, frame: LiveFrame, info: VideoInfo) -> Detections:
    """`dets` of `frame` in the stream's size (`info`: its first frame's, what the run's summary gives): a frame of
    another size (a camera's profile or resolution changed mid-stream) is fitted into it as the recording shows it,
    its aspect kept between black bars, and its boxes with it. So every answer of a run is in one size, and a track
    goes on across the change where the camera's view did not change (640x480 then 1280x960: the same boxes)."""
    if (frame.width, frame.height) == (info.width, info.height) or not len(dets) or info.width <= 0:
        return dets
    _, placed = letterbox_params((frame.height, frame.width), (info.height, info.width))
    return replace(dets, xyxy=letterboxed_boxes(dets.xyxy, placed))


def _next_connection(
    stream: LiveStream, why: str, open_stream: Callable[[float], LiveStream], stop: Stop
) -> LiveStream | None:
    """`stream`, which ended (`why`), closed and opened again (`_reopen`), watched by `stop`; None when stopped."""
    log.warning("%s: %s after %d frames received; reconnecting", stream.name, why, stream.received)
    stream.close()
    stop.unwatch(stream)
    again = _reopen(open_stream, stream.started, stop)
    if again is not None:
        stop.watch(again)
    return again


def _reopen(open_stream: Callable[[float], LiveStream], started: float, stop: Stop) -> LiveStream | None:
    """The stream opened again, tried until it opens: 1 s after it went, then 2, 4... up to `MAX_RECONNECT_WAIT_S`
    between tries (a camera rebooting, a network back after a minute). Ctrl-C stops the waiting; so does `stop`
    (then None)."""
    wait = 1.0
    while True:
        if stop.wait(wait):
            return None
        try:
            return open_stream(started)
        except InvalidInputError as exc:
            log.warning("%s; trying again in %g s", exc, min(2 * wait, MAX_RECONNECT_WAIT_S))
            wait = min(2 * wait, MAX_RECONNECT_WAIT_S)


def detect_cameras(
    det: Detector,
    urls: list[str],
    *,
    saves: Sequence[Path | Saving | None],
    readings: list[Reading],
    on_frame: Callable[[int, int, float, Detections, list[int | None] | None], None] | None = None,
    on_progress: Callable[[], Any] | None = None,
    **options: Any,
) -> list[LiveRun]:
    """Several live streams at once with one detector (one model in memory, the cores shared): each through
    `detect_live` on a thread of its own with its own tracker, recording (`saves[i]`), reading (`readings[i]`) and
    reconnections. `on_frame` gets the camera's place in `urls` first. The run ends when every stream has (each at its
    `max_frames`, its end, or its failure: the others go on), or on Ctrl-C for all. A stream that cannot be opened at
    the start stops the others and is raised. `options`: `detect_live`'s other keyword arguments, the same for each."""
    stop = Stop()
    runs: list[LiveRun | None] = [None] * len(urls)
    failed: list[BaseException] = []
    finished = [False] * len(urls)
    wake = threading.Event()

    def watch(camera: int) -> None:
        report = None if on_frame is None else lambda *answer: on_frame(camera, *answer)
        try:
            runs[camera] = detect_live(
                det,
                urls[camera],
                save=saves[camera],
                reading=readings[camera],
                on_frame=report,
                on_progress=on_progress,
                stop=stop,
                **options,
            )
        except BaseException as exc:  # a stream that will not open (or a fault): the whole run fails with it
            failed.append(exc)
            stop.request("stopped (another stream failed)")
        finally:
            finished[camera] = True
            wake.set()

    threads = [threading.Thread(target=watch, args=(n,), name=f"camera-{n}", daemon=True) for n in range(len(urls))]
    for thread in threads:
        thread.start()
    # Waited for with an Event, not Thread.join: a join that Ctrl-C interrupts may later return before its thread
    # ends (seen here on Python 3.11: the summary was built with one run missing).
    while not all(finished):
        try:
            wake.wait(0.5)  # a timeout, so Ctrl-C reaches this (the main) thread
            wake.clear()
        except KeyboardInterrupt as exc:  # Ctrl-C; or SIGTERM where the caller turns it into this (the CLI does)
            stop.request(f"stopped ({str(exc) or 'Ctrl-C'})")
    # Then each thread's end, which is quick: its runs are over. Why wait: a thread's OpenVINO infer request (one a
    # thread, in a thread-local) is destroyed as the thread ends, in C++ that waits without the GIL; a process that
    # exits meanwhile (the CLI prints its summary and ends) makes CPython end that daemon thread mid-destructor, and
    # the C++ runtime aborts it: `terminate called without an active exception`, exit status 134 after a good run
    # (seen in CI with two cameras; 6 of 40 runs of six such threads here, none once joined).
    for thread in threads:
        thread.join(timeout=10)
    if failed:
        raise failed[0]
    return [run for run in runs if run is not None]
