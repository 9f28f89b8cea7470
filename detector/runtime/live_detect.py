"""A live stream through a detector: the loop `detector predict rtsp://...` runs (detector/runtime/live.py reads).

Each turn takes the newest frame received, detects it (one frame a call, with the latency model: a camera wants each
answer soon, and a frame that waited is dropped anyway), tracks it and reports it. The run ends at the stream's end,
at `max_frames` detected frames, on Ctrl-C (a normal way to stop watching a camera: the recording is closed and
playable, the summary printed), or with an error when the stream stalls or breaks off (after the frames before it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detector.errors import InvalidInputError
from detector.runtime.classes import filter_classes
from detector.runtime.detector import Detector
from detector.runtime.draw import draw_detections
from detector.runtime.images import DecodedImage
from detector.runtime.live import LiveStream, StreamEnded
from detector.runtime.tiling import Tiling
from detector.runtime.tracking import Tracker
from detector.runtime.video import VideoInfo, VideoWriter
from detector.runtime.video_detect import OnFrame

log = logging.getLogger("detector.runtime.live_detect")


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


def detect_live(
    det: Detector,
    url: str,
    *,
    track: bool = False,
    save: Path | None = None,
    classes: frozenset[int] | None = None,
    predict: Mapping[str, Any] | None = None,
    tiles: Tiling | None = None,
    timeout_s: float = 10.0,
    max_frames: int = 0,
    keep_all: bool = False,
    on_frame: OnFrame | None = None,
    on_progress: Callable[[], Any] | None = None,
) -> LiveRun:
    """Detect (and with `track` track) the newest frame of the live stream at `url`, again and again, until it ends
    (or `max_frames` frames are detected, 0: no limit, or Ctrl-C). With `save`, every frame received is written with
    the newest boxes. `on_frame` gets each detected frame's answer (index: the frame's number among those received;
    time: when it arrived), `on_progress` each detected frame. `predict`: keyword arguments of `Detector.predict`.
    `keep_all`: no frame is dropped, the stream waits for the detector (a video file served over HTTP)."""
    if max_frames < 0:
        raise InvalidInputError(f"max_frames must be 0 (no limit) or more (got {max_frames})")
    recording: dict[str, Any] = {"writer": None, "last": None}

    def record(pixels: Any) -> None:  # on the reading thread: every frame, whole, with the newest boxes
        writer = recording["writer"]
        if writer is None:  # the recording's size is its first frame's (upright), as a clip's is
            assert save is not None
            writer = recording["writer"] = VideoWriter(save, stream.info.fps, pixels.shape[1], pixels.shape[0])
        last = recording["last"]
        writer.write(draw_detections(writer.fit(pixels), *last) if last else pixels)

    processed, ended, clean = 0, "", True
    stream = LiveStream(url, timeout_s, None if tiles else det.input_shape, record if save else None, keep_all)
    info = stream.info
    tracker = Tracker(info.fps) if track else None
    try:
        if tiles is not None:  # a tile larger than the stream's frames: refused before a frame is detected
            try:
                tiles.count(info.width, info.height)
            except InvalidInputError as exc:
                raise InvalidInputError(f"{stream.name}: {exc}") from None
        for frame in stream.frames():
            if tiles is not None:
                found = det.predict(frame.pixels, tiles=tiles, **(predict or {}))
            else:
                found = det.predict_batch([frame.pixels], **(predict or {}))[0]
            dets = filter_classes(DecodedImage(frame.pixels, frame.width, frame.height).to_sent(found), classes)
            track_ids = tracker.update(dets) if tracker else None
            recording["last"] = (dets, track_ids)
            processed += 1
            if on_frame:
                on_frame(frame.number, frame.time_s, dets, track_ids)
            if on_progress:
                on_progress()
            if max_frames and processed >= max_frames:
                ended = f"{max_frames} frames detected (max_frames)"
                break
    except StreamEnded as exc:
        ended, clean = exc.reason, exc.clean
    except KeyboardInterrupt:
        ended = "stopped (Ctrl-C)"
    finally:
        stream.close()
        if recording["writer"] is not None:
            recording["writer"].close()
    if not clean:
        log.warning("%s: %s after %d frames received", stream.name, ended, stream.received)
    written = recording["writer"].frames if recording["writer"] is not None else 0
    return LiveRun(info, stream.received, processed, stream.dropped, stream.damaged, written, ended, clean)
