"""One clip through a detector, frame after frame: the loop `detector predict clip.mp4` runs (and
`benchmarks/video.py` times against Ultralytics' `track`).

Frames are decoded on a thread of their own, a few ahead (`read_ahead`), so decoding overlaps detection, tracking
and writing. Every `vid_stride`-th frame is detected; the frames in between show the last detections (as
Ultralytics' `vid_stride` does) and, when nothing writes them, are never converted (in MJPEG never decoded).
When nothing writes frames, they come at the size the model's letterbox needs (`read_frames`' `reduce_to`: a reduced
decode where the codec has one, then shrunk before the RGB conversion) and boxes are mapped back to the clip's size.
The clip's size is its first frame's: a frame of another size (a stream whose size changes mid-clip) is taken as
scaled to it, as a player shows it, boxes and written frame alike. A frame that cannot be decoded (damaged data, a
recording cut off mid-write) is skipped, as players do, and reported (`VideoRun.damaged`, a warning): it is neither
detected nor written, and the frames after it are. On a GPU, consecutive frames go to the backend
together (`frames_per_call`); on a CPU backend with several streams (OpenVINO's throughput hint, which `detector
predict` uses for clips) that many calls run at once (`calls_in_flight`). Either way frames are tracked, reported
and written in order.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detector.errors import InvalidInputError
from detector.runtime.classes import filter_classes
from detector.runtime.detections import Detections
from detector.runtime.detector import Detector
from detector.runtime.draw import draw_detections
from detector.runtime.fastest import FastestOf
from detector.runtime.images import DecodedImage
from detector.runtime.tiling import Tiling
from detector.runtime.tracking import Tracker
from detector.runtime.video import (
    DAMAGED,
    Frame,
    VideoInfo,
    VideoWriter,
    check_outputs,
    probe_video,
    read_ahead,
    read_frames,
)

log = logging.getLogger("detector.runtime.video_detect")

GPU_FRAMES_PER_CALL = 8  # consecutive frames per backend call on a GPU: one launch for several frames

# (frame index, its time in seconds, its detections, their track ids or None) for every detected frame, in order
OnFrame = Callable[[int, float, Detections, list[int | None] | None], None]


@dataclass(frozen=True)
class VideoRun:
    info: VideoInfo
    frames: int  # frames read (and written, with `save`)
    processed: int  # frames detected
    damaged: tuple[int, ...] = ()  # where a packet could not be decoded (`read_frames`' DAMAGED): skipped


def frames_per_call(det: Detector) -> int:
    """On a GPU, consecutive frames go to the backend together (up to its batch limit); on a CPU one at a time,
    where a batch costs the sum of its images and only delays the first frame's answer (api/inference/batching.py)."""
    if not _on_gpu(det):
        return 1
    return min(GPU_FRAMES_PER_CALL, det.max_batch or GPU_FRAMES_PER_CALL)


def calls_in_flight(det: Detector) -> int:
    """Backend calls a clip keeps running at once: on a CPU, the backend's slots (OpenVINO's throughput hint: one per
    stream, each a frame on its own cores, which together beat one frame on every core; measured in
    docs/inference.md); 1 elsewhere, and on a GPU, where frames share a call instead (`frames_per_call`)."""
    if _on_gpu(det):
        return 1
    return max(1, int(det.backend.slots))


def _on_gpu(det: Detector) -> bool:
    return str(det.backend.device_name).startswith("cuda")


def frames_detector(
    det: Detector, predict: Mapping[str, Any], tiles: Tiling | None, info: VideoInfo, name: str
) -> Callable[[list[Any]], list[Detections]]:
    """What one call does with its frames: a batch, or each frame in tiles (checked against the clip's size first:
    a tile larger than the clip is refused, naming it (`name`), before any frame is read). A clip's and a live
    stream's (`detector.runtime.live_detect`)."""
    if tiles is None:
        return lambda frames: det.predict_batch(frames, **predict)
    try:
        tiles.count(info.width, info.height)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{name}: {exc}") from None
    return lambda frames: [det.predict(frame, tiles=tiles, **predict) for frame in frames]


def detect_video(
    det: Detector,
    path: Path,
    *,
    info: VideoInfo | None = None,
    vid_stride: int = 1,
    track: bool = False,
    save: Path | None = None,
    classes: frozenset[int] | None = None,
    predict: Mapping[str, Any] | None = None,
    tiles: Tiling | None = None,
    on_frame: OnFrame | None = None,
    on_progress: Callable[[], Any] | None = None,
) -> VideoRun:
    """Detect (and with `track` track) every `vid_stride`-th frame of `path`; with `save`, write every frame with
    its boxes (the same fps and count). `on_frame` gets each detected frame's answer, `on_progress` each frame.
    `info`: the clip's `probe_video`, when the caller has it already; `predict`: keyword arguments of
    `Detector.predict_batch` (conf, iou, max_det, conf_per_class). `tiles`: each frame detected in overlapping
    tiles (`Detector.predict`'s; frames decoded whole, one frame a call, its tiles the batch)."""
    if not path.is_file():
        raise InvalidInputError(f"video not found: {path}")
    check_outputs(path, save)
    info = info or probe_video(path)
    detect = frames_detector(det, predict or {}, tiles, info, path.name)
    tracker = Tracker(info.fps / vid_stride) if track else None
    writer = VideoWriter(save, info.fps, info.width, info.height) if save else None
    processed = frames = 0
    damaged: list[int] = []
    last: tuple[Detections, list[int | None] | None] | None = None
    per_call = 1 if tiles else frames_per_call(det)
    ways = _Ways(
        det,
        detect,
        info,
        vid_stride,
        tiles,
        frames_detector_for=lambda twin: frames_detector(twin, predict or {}, None, info, path.name),
    )
    pending: list[Frame] = []  # frames read, waiting for their call
    # Calls made (each with its frames, in order) whose frames are not yet tracked, reported and written.
    calls: deque[tuple[list[Frame], Future[list[Detections]] | list[Detections]]] = deque()

    def call() -> None:
        """Send the pending frames to process to the backend in one call (in the pool when calls overlap); then
        finish the oldest calls until fewer than the way's `in_flight` remain."""
        way = ways.current()
        batch = [frame.pixels for frame in pending if frame.run]
        if way.pool is not None and batch:
            calls.append((pending.copy(), way.pool.submit(way.detect, batch)))
        else:
            calls.append((pending.copy(), way.detect(batch) if batch else []))
        pending.clear()
        while len(calls) >= way.in_flight:
            finish(*calls.popleft())

    def finish(group: list[Frame], answer: Future[list[Detections]] | list[Detections]) -> None:
        """Track, report and write a call's frames in order (tracking needs the frames in order; calls only change
        how many frames go to the backend at once)."""
        nonlocal last, processed, frames
        found = iter(answer.result() if isinstance(answer, Future) else answer)
        for index, frame, run, time_s in group:
            if run:
                dets = filter_classes(DecodedImage(frame, info.width, info.height).to_sent(next(found)), classes)
                # Numbered: over a damaged frame the decoder skipped, the tracks are predicted across the gap.
                track_ids = tracker.update(dets, index // vid_stride) if tracker else None
                last = (dets, track_ids)
                processed += 1
                ways.done()
                if on_frame:
                    on_frame(index, time_s, dets, track_ids)
            if writer:  # boxes are in the clip's size: drawn on the frame at that size
                writer.write(draw_detections(writer.fit(frame), *last) if last else frame)
            frames += 1
            if on_progress:
                on_progress()

    try:
        # Without `save` the frames between two vid_stride frames are never converted, and the others may decode
        # at the model's size; a writer needs every frame, whole, and so do tiles.
        saving = writer is not None
        reduce_to = None if saving or tiles else det.input_shape
        frames_read = read_frames(path, vid_stride, keep_skipped=saving, reduce_to=reduce_to)
        for item in read_ahead(frames_read, depth=max(4, 2 * per_call * ways.most_in_flight)):
            if item.pixels is DAMAGED:  # nothing to detect or write: the frames after it go on
                damaged.append(item.number)
                continue
            pending.append(item)
            if sum(frame.run for frame in pending) >= per_call:
                call()
        if pending:
            call()
        while calls:
            finish(*calls.popleft())
    finally:
        ways.close()
        if writer:
            writer.close()
        _warn_damaged(path.name, damaged)
    return VideoRun(info, frames, processed, tuple(damaged))


@dataclass(frozen=True)
class _Way:
    """A way of running a clip's frames: `detect` with up to `in_flight` calls at once (in `pool` when more than one).

    Two on a CPU backend with streams (`calls_in_flight` > 1): a frame on each stream at once, and, once loaded
    (`Detector.one_thread`), one frame at a time on the loop's own thread, which leaves the other cores to decoding.
    2-core Intel AMX VM, 30 s 720p clips, frames/s on the streams against one thread: H.264 at `vid_stride` 3 with
    the 256 px INT8 model 141-150 against 169-177, every frame 252-264 against 266-274; MPEG-4 at 256 px 338-348
    against 279-289; 640 px 90-131 against 70-77 (2026-12-06). So `FastestOf` times both as the clip goes."""

    detect: Callable[[list[Any]], list[Detections]]
    in_flight: int
    pool: ThreadPoolExecutor | None


# Detected frames below which a clip is run one way only: timing two ways, and loading the second the first time
# (about 0.5 s of CPU), would cost more than a short clip could gain.
PACE_FROM_FRAMES = 256


class _Ways:
    """The ways `det` may run a clip's frames (`_Way`) and which is the fastest now (`FastestOf`): the backend's
    slots at once (in a pool of that many threads), and, on a CPU backend with several slots, once loaded and warm in
    the background (`Detector.one_thread`), one frame at a time on the loop's thread. One way only for tiles (each
    frame's tiles are already a batch split over the streams) and for clips under `PACE_FROM_FRAMES` frames to
    detect."""

    def __init__(
        self,
        det: Detector,
        detect: Callable[[list[Any]], list[Detections]],
        info: VideoInfo,
        vid_stride: int,
        tiles: Tiling | None,
        frames_detector_for: Callable[[Detector], Callable[[list[Any]], list[Detections]]],
    ) -> None:
        self.most_in_flight = calls_in_flight(det)
        self._pool = (
            ThreadPoolExecutor(self.most_in_flight, thread_name_prefix="video-detect")
            if self.most_in_flight > 1
            else None
        )
        self._fastest = FastestOf(_Way(detect, self.most_in_flight, self._pool))
        frames = info.frames // vid_stride if info.frames > 0 else PACE_FROM_FRAMES  # unknown counts as enough
        pace = tiles is None and self.most_in_flight > 1 and frames >= PACE_FROM_FRAMES
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="video-one-thread") if pace else None
        warm_for = (info.width, info.height)
        self._loading = self._loader.submit(det.one_thread, warm_for=warm_for) if self._loader is not None else None
        self._detector_for = frames_detector_for

    def current(self) -> _Way:
        """The way to run the next call (the one-thread way joins the timing once it is ready)."""
        if self._loading is not None and self._loading.done():
            twin, self._loading = _loaded(self._loading), None
            if twin is not None:
                self._fastest.add(_Way(self._detector_for(twin), 1, None))
        return self._fastest.current

    def done(self) -> None:
        """A detected frame is finished."""
        self._fastest.done()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._loader is not None:
            self._loader.shutdown(wait=True, cancel_futures=True)


def _loaded(loading: Future[Detector | None]) -> Detector | None:
    """The one-thread detector loaded in the background, or None (and a warning) if it failed: the clip goes on
    the way it was running."""
    try:
        return loading.result()
    except Exception:
        log.warning("the one-thread model could not be loaded; the clip keeps running as it was", exc_info=True)
        return None


def _warn_damaged(name: str, damaged: list[int]) -> None:
    """One warning for the packets of a clip that could not be decoded (skipped), naming the first ten."""
    if damaged:
        shown = ", ".join(map(str, damaged[:10])) + (", ..." if len(damaged) > 10 else "")
        log.warning("%s: %d frame(s) cannot be decoded (damaged data), skipped: %s", name, len(damaged), shown)
