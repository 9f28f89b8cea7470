"""A live stream through a detector: the loop `detector predict rtsp://...` runs (detector/runtime/live.py reads).

Each turn takes the newest frame received, detects it (one frame a call, with the latency model: a camera wants each
answer soon, and a frame that waited is dropped anyway), tracks it and reports it. The run ends at the stream's end,
at `max_frames` detected frames, on Ctrl-C (a normal way to stop watching a camera: the recording is closed and
playable, the summary printed), or with an error when the stream stalls or breaks off (after the frames before it);
with `reconnect`, a stream that ends, stalls or breaks off is opened again instead (a camera rebooting, Wi-Fi).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detector.errors import InvalidInputError
from detector.runtime.classes import filter_classes
from detector.runtime.detections import Detections
from detector.runtime.detector import Detector
from detector.runtime.draw import draw_detections
from detector.runtime.images import DecodedImage
from detector.runtime.live import LiveFrame, LiveStream, StreamEnded
from detector.runtime.tiling import Tiling
from detector.runtime.tracking import Tracker
from detector.runtime.video import StampedVideoWriter, VideoInfo, check_stamped_path
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


@dataclass(frozen=True)
class LiveRun:
    info: VideoInfo  # the stream's size and declared rate
    received: int  # frames that arrived
    processed: int  # frames detected
    dropped: int  # arrived while an earlier one was detected, never taken
    damaged: int  # could not be decoded (skipped)
    written: int  # frames in the recording (`save`)
    ended: str  # why the run stopped
    clean: bool  # the stream's end, max_frames or Ctrl-C; False when it stalled or broke off
    reconnects: int = 0  # times the stream was opened again (`reconnect`)


def detect_live(
    det: Detector,
    url: str,
    *,
    track: bool = False,
    save: Path | None = None,
    classes: frozenset[int] | None = None,
    predict: Mapping[str, Any] | None = None,
    tiles: Tiling | None = None,
    reading: Reading = Reading(),
    max_frames: int = 0,
    on_frame: OnFrame | None = None,
    on_progress: Callable[[], Any] | None = None,
) -> LiveRun:
    """Detect (and with `track` track) the newest frame of the live stream at `url`, again and again, until it ends (or
    `max_frames` frames are detected, 0: no limit, or Ctrl-C). With `save` (.mp4, .mkv, .mov), every frame received is
    written with the newest boxes at the time it arrived (`StampedVideoWriter`). `on_frame` gets each detected frame's
    answer (index: the frame's number among those received; time: when it arrived), `on_progress` each detected frame.
    `predict`: keyword arguments of `Detector.predict`. `reading`: how the stream is read (`Reading`)."""
    if max_frames < 0:
        raise InvalidInputError(f"max_frames must be 0 (no limit) or more (got {max_frames})")
    if save is not None:
        check_stamped_path(save)  # before the stream opens: the recording is made on the reading thread
    recording: dict[str, Any] = {"writer": None, "last": None}

    def record(pixels: Any, arrived: float) -> None:  # on the reading thread: every frame, whole, the newest boxes
        writer = recording["writer"]
        if writer is None:  # the recording's size is its first frame's (upright), as a clip's is
            assert save is not None
            writer = recording["writer"] = StampedVideoWriter(save, pixels.shape[1], pixels.shape[0])
        last = recording["last"]
        writer.write(draw_detections(writer.fit(pixels), *last) if last else pixels, arrived)

    def open_stream(started: float = 0.0) -> LiveStream:
        reduce_to = None if tiles else det.input_shape
        return LiveStream(url, reading.timeout_s, reduce_to, record if save else None, reading.keep_all, started)

    def detect(frame: LiveFrame) -> tuple[Detections, list[int | None] | None]:
        found = detect_frames([frame.pixels])[0]
        dets = filter_classes(DecodedImage(frame.pixels, frame.width, frame.height).to_sent(found), classes)
        return dets, tracker.update(dets) if tracker else None

    # A backend's first call is slow (OpenVINO on the quick model: 375 ms, then 2-3 ms): made before the stream opens,
    # since a camera's frames that come meanwhile are dropped (7 of a 30 fps camera's first 8 before, 3 now; the
    # first frame's own input shape, its aspect letterboxed, still costs about 125 ms once).
    det.warmup(runs=1)
    stream = open_stream()
    info = stream.info
    tracker = Tracker(info.fps) if track else None
    processed, ended, clean, reconnects = 0, "", True, 0
    earlier = [0, 0, 0]  # frames received, dropped, damaged on the connections before this one
    try:
        detect_frames = frames_detector(det, predict or {}, tiles, info, stream.name)  # a tile too large: refused
        while not ended:
            try:
                for frame in stream.frames():
                    recording["last"] = dets, track_ids = detect(frame)
                    processed += 1
                    if on_frame:
                        on_frame(earlier[0] + frame.number, frame.time_s, dets, track_ids)
                    if on_progress:
                        on_progress()
                    if max_frames and processed >= max_frames:
                        ended = f"{max_frames} frames detected (max_frames)"
                        break
            except StreamEnded as exc:
                if not reading.reconnect or reading.keep_all:
                    ended, clean = exc.reason, exc.clean
                    break
                log.warning("%s: %s after %d frames received; reconnecting", stream.name, exc.reason, stream.received)
                earlier = [earlier[0] + stream.received, earlier[1] + stream.dropped, earlier[2] + stream.damaged]
                stream.close()
                stream = _reopen(open_stream, stream.started)
                reconnects += 1
    except KeyboardInterrupt as exc:  # Ctrl-C; or SIGTERM where the caller turns it into this (the CLI does)
        ended, clean = f"stopped ({str(exc) or 'Ctrl-C'})", True
    finally:
        stream.close()
        if recording["writer"] is not None:
            recording["writer"].close()
    received = earlier[0] + stream.received
    if not clean:
        log.warning("%s: %s after %d frames received", stream.name, ended, received)
    written = recording["writer"].frames if recording["writer"] is not None else 0
    dropped, damaged = earlier[1] + stream.dropped, earlier[2] + stream.damaged
    return LiveRun(info, received, processed, dropped, damaged, written, ended, clean, reconnects)


def _reopen(open_stream: Callable[[float], LiveStream], started: float) -> LiveStream:
    """The stream opened again, tried until it opens: 1 s after it went, then 2, 4... up to `MAX_RECONNECT_WAIT_S`
    between tries (a camera rebooting, a network back after a minute). Ctrl-C stops the waiting."""
    wait = 1.0
    while True:
        time.sleep(wait)
        try:
            return open_stream(started)
        except InvalidInputError as exc:
            log.warning("%s; trying again in %g s", exc, min(2 * wait, MAX_RECONNECT_WAIT_S))
            wait = min(2 * wait, MAX_RECONNECT_WAIT_S)
