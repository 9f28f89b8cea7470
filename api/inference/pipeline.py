"""The life of every prediction, owned here: admission -> decode within the pixel budget -> inference -> boxes back
to the image as sent -> class filter -> what watches the model -> release.

`/predict`, `/predict/annotated`, `/predict/batch` and `/predict/video` all run their images through `Pipeline`;
the routes only parse their inputs and encode the answer. The order matters and is kept in one place:

1. the thresholds and the class filter are checked before the body is read (`options`, a 422 costs nothing);
2. the body arrives under an upload place, bounded apart from the queue, so slow senders never hold queue places
   (`receiving`, api/admission/uploads.py);
3. a queue place is reserved once the bytes are here (503 + Retry-After at once when the queue is full);
4. the image is decoded within the shared pixel budget (api/inference/decoding.py);
5. it is submitted to the micro-batcher (api/inference/batching.py) and its queue place given back once inference
   is done;
6. the boxes are scaled to the image as sent (after a reduced decode), the client's class filter is applied (after
   NMS, so it never splits a micro-batch), and metrics, tracing, drift, the inbox and the shadow see the answer;
7. the caller gets a `Prediction` inside a `with` block: the pixels stay counted in the budget until it ends, so a
   route that draws on them does it inside the block.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from starlette.requests import Request

from api.admission.bodies import body_kind, read_image_input
from api.admission.uploads import UploadGate
from api.errors import BadRequestError, UnprocessableError
from api.inference.batching import ClassThresholds, InferenceResult, MicroBatcher, Reservation, Thresholds
from api.inference.clip_ways import ClipWays
from api.inference.decoding import Decoder
from api.model.slot import ModelSlot
from api.monitoring.drift import DriftMonitor
from api.monitoring.inbox import Inbox
from api.monitoring.metrics import Metrics
from api.monitoring.shadow import Shadow
from api.monitoring.tracing import StageSpans
from detector.config import InferenceConfig
from detector.errors import InvalidInputError
from detector.runtime import Detections
from detector.runtime.classes import filter_classes, parse_class_conf, parse_classes, resolve_class_conf
from detector.runtime.images import DecodedImage
from detector.runtime.tiling import Box, Tiling, crops, merge_tiles
from detector.runtime.video import DAMAGED, Frame

_PLACE_RETRY_S = 0.02  # how often heavy work waiting in line looks for room


@dataclass(frozen=True)
class Options:
    """What a client asked of a prediction: the thresholds (which requests may share a backend call) and the
    class filter (applied to the answer)."""

    thresholds: Thresholds
    classes: frozenset[int] | None = None  # None: every class
    tiling: Tiling | None = None  # `tile=WxH`: detect in overlapping tiles (detector/runtime/tiling.py)


@dataclass(frozen=True)
class Work:
    """How one kind of image goes through the pipeline."""

    bulk: bool  # a batch item or a video frame: the bulk lane and its share of the queue (api/inference/batching.py)
    full_size: bool  # decode every pixel whatever `decode_mode` says (drawing; batch answers keep the decoded size)
    observed: bool  # stage timings, detection counts, drift and tracing see it
    collected: bool  # offered to the inbox (api/monitoring/inbox.py)
    shadowed: bool  # offered to the shadow challenger (api/monitoring/shadow.py)


SINGLE = Work(bulk=False, full_size=False, observed=True, collected=True, shadowed=True)  # /predict
DRAWN = Work(bulk=False, full_size=True, observed=True, collected=False, shadowed=False)  # /predict/annotated
BATCH_ITEM = Work(bulk=True, full_size=True, observed=False, collected=False, shadowed=True)  # /predict/batch
FRAME = Work(bulk=True, full_size=False, observed=False, collected=False, shadowed=False)  # /predict/video


@dataclass(frozen=True)
class Prediction:
    image: npt.NDArray[np.uint8]  # the decoded pixels (every pixel with Work.full_size)
    size: tuple[int, int]  # (height, width) of the image as sent
    detections: Detections  # in pixels of the image as sent, class filter applied
    result: InferenceResult
    timings_ms: dict[str, float]

    @property
    def model(self) -> dict[str, Any]:
        """`describe()` of the model that answered (matters during a reload)."""
        return self.result.model


class Pipeline:
    def __init__(
        self,
        config: InferenceConfig,
        slot: ModelSlot,
        batcher: MicroBatcher,
        decoder: Decoder,
        uploads: UploadGate,
        metrics: Metrics,
        drift: DriftMonitor,
        inbox: Inbox,
        shadow: Shadow,
        spans: StageSpans,
    ) -> None:
        self.config = config
        self.server = config.server
        self.slot = slot
        self.batcher = batcher
        self.decoder = decoder
        self.uploads = uploads
        self.metrics = metrics
        self.drift = drift
        self.inbox = inbox
        self.shadow = shadow
        self.spans = spans

    @property
    def max_body_bytes(self) -> int:
        return int(self.server.max_upload_mb * 1024 * 1024)

    # -- 1. options, checked before the body is read ------------------------------------------------------------

    def options(
        self,
        conf: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
        conf_per_class: str | dict[str, Any] | None = None,
        classes: str | list[Any] | None = None,
        tile: str | None = None,
        overlap: float = 0.2,
    ) -> Options:
        """The client's options with the configured defaults filled in; 422 for a max_det over the server's limit,
        an unknown class or a bad threshold. Without `conf`, and with `inference.class_thresholds`, conf stays None:
        the model applies its own per-class thresholds."""
        inf = self.config
        limit = self.server.max_det_limit
        if max_det is not None and max_det > limit:
            raise UnprocessableError(f"query parameter max_det: must be at most {limit} (got {max_det})")
        thresholds = Thresholds(
            (None if inf.class_thresholds else inf.conf) if conf is None else conf,
            inf.iou if iou is None else iou,
            inf.max_det if max_det is None else max_det,
            self._class_thresholds(conf_per_class),
        )
        return Options(thresholds, self._classes(classes), self._tiling(tile, overlap))

    def _tiling(self, tile: str | None, overlap: float) -> Tiling | None:
        if tile is None:
            return None
        settings = self.config.tiling
        try:
            return Tiling.parse(tile, overlap, settings.merge, settings.match_threshold, settings.full_image)
        except InvalidInputError as exc:
            raise UnprocessableError(str(exc)) from None

    def with_body_options(
        self, options: Options, classes: str | list[Any] | None, conf_per_class: str | dict[str, Any] | None
    ) -> Options:
        """`options` plus the class filter and per-class thresholds a body may carry instead of the query; 400
        when both give the same one."""
        if classes is not None:
            if options.classes is not None:
                raise BadRequestError("give the class filter once: in the query or in the body, not both")
            options = Options(options.thresholds, self._classes(classes), options.tiling)
        if conf_per_class is not None:
            if options.thresholds.class_conf:
                raise BadRequestError("give conf_per_class once: in the query or in the body, not both")
            thresholds = options.thresholds._replace(class_conf=self._class_thresholds(conf_per_class))
            options = Options(thresholds, options.classes, options.tiling)
        return options

    def _class_thresholds(self, spec: str | dict[str, Any] | None) -> ClassThresholds:
        """`conf_per_class` (`circle:0.4,2:0.6`, or a JSON object) against the served model's classes."""
        if spec is None:
            return ()
        names = self.model_names()
        chosen = parse_class_conf(spec, names) if isinstance(spec, str) else resolve_class_conf(spec, names)
        return tuple(sorted(chosen.items()))

    def _classes(self, spec: str | list[Any] | None) -> frozenset[int] | None:
        return None if spec is None else parse_classes(spec, self.model_names())

    def model_names(self) -> dict[int, str]:
        model = self.slot.current
        names = model.info.get("names", {}) if model is not None else {}
        return {int(k): str(v) for k, v in names.items()}

    # -- 2. bodies ----------------------------------------------------------------------------------------------

    def receiving(self) -> contextlib.AbstractContextManager[None]:
        """An upload place held while a body arrives (routes that read their own body: batch forms, clips)."""
        return self.uploads.holding()

    async def read_image(self, request: Request, options: Options) -> tuple[bytes, Options]:
        """The one image of a `/predict`-style body (multipart `file`, JSON `image_base64`, or the image as the body)
        and the options it carries; 400/415 from the headers before any place is taken."""
        kind = body_kind(request)
        with self.uploads.holding():
            body = await read_image_input(request, kind, self.max_body_bytes)
        return body.data, self.with_body_options(options, body.classes, body.conf_per_class)

    # -- 3-7. one image -----------------------------------------------------------------------------------------

    @asynccontextmanager
    async def predicting(
        self,
        data: bytes,
        options: Options,
        work: Work = SINGLE,
        started: float | None = None,
        reservation: Reservation | None = None,
    ) -> AsyncIterator[Prediction]:
        """Reserve a queue place (unless given one by `reserve`), decode `data` within the budget, detect; the
        pixels stay counted until the `with` block ends. `started`: when the request began (perf_counter), for the
        `read` and `total` timings."""
        t_read = time.perf_counter()
        started = t_read if started is None else started
        started_ns = time.time_ns() - int((t_read - started) * 1e9)  # where the trace's stage spans begin
        if reservation is None:
            reservation = self.batcher.reserve(bulk=work.bulk)  # 503 + Retry-After at once when the queue is full
        try:
            async with self.decoder.image(data, self.reduce_to(options, work), bulk=work.bulk) as decoded:
                t_decode = time.perf_counter()
                if options.tiling is None:
                    result = await self._infer(reservation, decoded.pixels, options.thresholds)
                else:
                    result = await self._infer_tiles(reservation, decoded.pixels, options.thresholds, options.tiling)
                    work = replace(work, shadowed=False)  # the challenger sees whole images: no fair comparison
                timings = {
                    "read": round((t_read - started) * 1e3, 3),
                    "decode": round((t_decode - t_read) * 1e3, 3),
                    **result.timings_ms,
                    "total": round((time.perf_counter() - started) * 1e3, 3),
                }
                yield self._answer(data, decoded, result, options, work, timings, started_ns)
        finally:
            reservation.release()  # when the decode failed before inference (releasing twice is a no-op)

    async def wait_for_room(self, has_room: Callable[[], bool], wait_s: float | None = None) -> None:
        """Wait in line (up to `wait_s`, default `bulk_wait_s`) until `has_room()`; the caller then takes its place
        at once (nothing else runs between) or gets the 503 that taking it answers.

        Why heavy work waits here rather than being refused at once: a client that re-sends a refused batch or
        clip straight away (as a load test does) then costs nothing while it waits, instead of a parse of its
        body, or an upload, every few milliseconds; measured on the 2-core host, 4 such batch clients and 9 such
        video clients pushed a single `/predict` from 10 ms to 44 and 91 ms at p50 (the video clients' own
        retries used 1.6 of its 2 cores). Polled every 20 ms: a few wake-ups of the event loop per waiter."""
        deadline = time.perf_counter() + (self.server.bulk_wait_s if wait_s is None else wait_s)
        while not has_room() and not self.batcher.closing and time.perf_counter() < deadline:
            await asyncio.sleep(_PLACE_RETRY_S)

    async def reserve(self, count: int, work: Work) -> list[Reservation]:
        """`count` queue places at once, or none, waiting in line for them (`wait_for_room`); then 503 +
        Retry-After when they still do not all fit. A batch takes them before any of its images is decoded."""
        await self.wait_for_room(lambda: self.batcher.has_room(work.bulk, count))
        return self._take_places(count, work.bulk)

    def reduce_to(self, options: Options, work: Work) -> tuple[int, int] | None:
        """The size decoding may reduce JPEGs and video frames to: the served model's input (h, w), in
        `decode_mode: reduced`; None when every pixel is needed (drawing, a batch's answers, tiles)."""
        model = self.slot.current
        if self.server.decode_mode != "reduced" or model is None or work.full_size or options.tiling:
            return None
        size = model.info.get("input_size")
        return (int(size[0]), int(size[1])) if size else None

    async def _infer(
        self, reservation: Reservation, pixels: npt.NDArray[np.uint8], thresholds: Thresholds
    ) -> InferenceResult:
        try:
            return await self.batcher.submit(reservation, pixels, thresholds, self.server.request_timeout_s)
        finally:
            reservation.release()  # the queue place is for inference only, not for what the route does next

    async def _infer_tiles(
        self, reservation: Reservation, pixels: npt.NDArray[np.uint8], thresholds: Thresholds, tiling: Tiling
    ) -> InferenceResult:
        """The image's tiles (and the whole image with `full_image`) as one micro-batcher job on the request's
        queue place, run as one batch as the library runs them (`MicroBatcher.submit_together`), merged."""
        grid = self.tile_grid(tiling, pixels.shape[1], pixels.shape[0])
        views = crops(pixels, grid) + ([pixels] if tiling.full_image else [])
        try:
            results = await self.batcher.submit_together(reservation, views, thresholds, self.server.request_timeout_s)
        finally:
            reservation.release()  # the queue place is for inference only, not for what the route does next
        whole = results.pop().detections if tiling.full_image else None
        merged = merge_tiles([r.detections for r in results], grid, tiling, thresholds.max_det, whole)
        return InferenceResult(merged, results[0].model, results[0].batch_size, dict(results[0].timings_ms))

    def tile_grid(self, tiling: Tiling, width: int, height: int) -> list[Box]:
        """The tiles of a `width` x `height` image; 422 naming `tile` for a tile larger than the image, or more
        tiles than `max_tiles` or than the pixel budget holds."""
        try:
            count = tiling.count(width, height)  # counted before any tile is made: a client sets the step
        except InvalidInputError as exc:
            raise UnprocessableError(str(exc)) from None
        limit = self.config.tiling.max_tiles
        if count > limit:
            raise UnprocessableError(
                f"tile: {tiling.width}x{tiling.height} with overlap {tiling.overlap} cuts this {width}x{height} "
                f"image into {count} tiles; at most {limit} (inference.tiling.max_tiles): send larger tiles"
            )
        if count * tiling.width * tiling.height > self.server.decode_pixel_budget:
            raise UnprocessableError(
                f"tile: {count} tiles of {tiling.width}x{tiling.height} exceed the server's pixel budget "
                f"({self.server.decode_pixel_budget}, inference.server.decode_pixel_budget)"
            )
        return tiling.grid(width, height)

    def _take_places(self, count: int, bulk: bool) -> list[Reservation]:
        taken: list[Reservation] = []
        try:
            for _ in range(count):
                taken.append(self.batcher.reserve(bulk=bulk))
        except BaseException:
            for place in taken:
                place.release()
            raise
        return taken

    def _answer(
        self,
        data: bytes | None,
        decoded: DecodedImage,
        result: InferenceResult,
        options: Options,
        work: Work,
        timings: dict[str, float],
        started_ns: int,
    ) -> Prediction:
        """Boxes to the image as sent, the class filter, and what watches the model."""
        detections = decoded.to_sent(result.detections)  # unchanged after a full-size decode
        sent = filter_classes(detections, options.classes)
        size = (decoded.height, decoded.width)
        seen = None
        if work.observed:
            self.metrics.observe_stages(timings)
            if self.spans.enabled:
                self.spans.record(started_ns, timings, _trace_attributes(result, decoded, detections))
            self.metrics.observe_detections(sent.class_names())
            seen = self.drift.observe(decoded.pixels, size, detections)  # all classes: the filter is the client's
        on_disagree = None
        if work.collected and data is not None and self.inbox.enabled:
            reasons = self.inbox.reasons(detections, self.drift.outliers(seen, self.inbox.settings.drift_outlier_share))
            self.inbox.offer(data, size, detections, result.model, reasons)
            if self.inbox.settings.shadow_disagreement and not reasons:  # not kept yet: maybe on disagreement

                def on_disagree() -> None:
                    self.inbox.offer(data, size, detections, result.model, ("shadow_disagreement",))

        if work.shadowed:
            self.shadow.offer(decoded.pixels, result, options.thresholds, on_disagree)
        return Prediction(decoded.pixels, size, sent, result, timings)

    # -- a clip's frames ----------------------------------------------------------------------------------------

    def frames(self, frames: Iterator[Frame], size: tuple[int, int], options: Options) -> FrameStream:
        """The processed frames of a clip through the same steps, in frame order (see `FrameStream`); `size`:
        the clip's (width, height), which boxes are given in when `frames` come decoded at reduced size."""
        return FrameStream(self, frames, size, options)

    async def _frame(
        self, pixels: npt.NDArray[np.uint8], size: tuple[int, int], options: Options, one_thread: bool = False
    ) -> Prediction:
        """One decoded frame (in tiles with `tile=`) of a clip of `size` (width, height): waits for its queue
        place (a full queue mid-clip is not the clip's fault) up to the request timeout; tiles that cannot be cut
        are refused before that wait. `one_thread`: on the model's one-thread twin where loaded (`ClipWays`)."""
        if options.tiling is not None:
            # The route checked the tiles on the probed size; a container may lie about it (or change size
            # mid-stream), and a frame that cannot be tiled is refused now rather than after waiting for a place.
            self.tile_grid(options.tiling, pixels.shape[1], pixels.shape[0])
        await self.wait_for_room(lambda: self.batcher.has_room(True), self.server.request_timeout_s)
        reservation = self.batcher.reserve(bulk=True, overlap=True, one_thread=one_thread)
        decoded = DecodedImage(pixels, *size)
        if options.tiling is None:
            result = await self._infer(reservation, pixels, options.thresholds)
        else:
            result = await self._infer_tiles(reservation, pixels, options.thresholds, options.tiling)
        return self._answer(None, decoded, result, options, FRAME, dict(result.timings_ms), 0)


class FrameStream:
    """A clip's processed frames as `(index, time_s, Prediction)`, in frame order, with up to `max_batch` frames in
    inference at once (a clip fills micro-batches by itself), or one at a time on the model's one-thread twin where
    the clip is timed faster that way (`ClipWays`), and the next frame read (decoded) meanwhile, one read at a time
    (the reader is a generator), while its line and the ones before it are answered.

    Each frame holds its pixels in the shared budget from before it is decoded (its full size) until the consumer
    asks for the next one (its line is out); once decoded, only what its array holds (less after a reduced decode).
    A packet that could not be decoded (`read_frames`' DAMAGED) comes in its place as `(index, time_s, None)`, and the
    frames after it follow. `max_video_frames` bounds what is read: frames, skipped or not, and damaged packets.
    One read runs up to the next frame to answer (`_read_needed`): the frames `vid_stride` skips come in the same
    call, not one event-loop round trip each.
    `close()` is synchronous and idempotent, so a response can run it from a `finally` during cancellation: it
    gives back every hold, cancels the frames in inference, and closes the reader (after a read in flight, which
    cannot be interrupted)."""

    def __init__(self, pipeline: Pipeline, frames: Iterator[Frame], size: tuple[int, int], options: Options) -> None:
        self._pipeline = pipeline
        self._frames = frames
        self._size = size
        # What a frame takes from the budget before it is decoded: its full size (the decoder may make it whole).
        self._frame_pixels = max(1, size[0] * size[1])
        self._options = options
        # Up to `max_batch` frames in inference at once, or one at a time on the model's one-thread twin: whichever
        # is timed faster on this clip (api/inference/clip_ways.py).
        self._ways = ClipWays(pipeline.slot, pipeline.server.max_batch, size, timed=options.tiling is None)
        self._pending: deque[tuple[int, float, asyncio.Future[Prediction | None]]] = deque()
        self._holds: deque[int] = deque()  # one per frame read and not yet handed out
        self._reading: asyncio.Future[tuple[int, Frame | None]] | None = None
        self._items_read = 0  # items read: frames (skipped ones too) and damaged packets
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[tuple[int, float, Prediction | None]]:
        pipeline = self._pipeline
        budget = pipeline.decoder.pixels
        limit = pipeline.server.max_video_frames
        while True:
            if self._reading is None:
                # Room in the budget for the next frame: our own oldest frames make room first, then wait in line.
                while not (taken := budget.try_take(self._frame_pixels)) and self._pending:
                    yield await self._next()
                if not taken:
                    taken = await budget.acquire(self._frame_pixels, pipeline.server.decode_wait_s)
                self._reading = self._start_read(taken)
            count, item = await self._reading
            self._reading = None
            self._items_read += count
            if self._items_read > limit:
                raise UnprocessableError(f"the clip has more than {limit} frames (inference.server.max_video_frames)")
            if item is None:
                budget.give_back(self._holds.pop())
                break
            index, pixels, run, time_s = item
            if pixels is DAMAGED:  # its place in the answer: keeps a pixel of its hold until then
                self._holds[-1] = budget.shrink(self._holds[-1], 0)
                damaged: asyncio.Future[Prediction | None] = asyncio.get_running_loop().create_future()
                damaged.set_result(None)
                self._pending.append((index, time_s, damaged))
            elif run:
                # A frame decoded at the model's size keeps only what its array holds (as a reduced JPEG does).
                self._holds[-1] = budget.shrink(self._holds[-1], pixels.shape[0] * pixels.shape[1])
                one_thread = self._ways.current.one_thread
                frame = asyncio.ensure_future(pipeline._frame(pixels, self._size, self._options, one_thread))
                self._pending.append((index, time_s, cast("asyncio.Future[Prediction | None]", frame)))
            else:  # a skipped frame ends a read at READ_AT_MOST (or as the one past the limit, refused above)
                budget.give_back(self._holds.pop())
            # Read ahead while the budget has room: the next frame decodes while the ones before it are answered
            # (tracked, written, sent), as the CLI's reader thread does; else decoding waited for each line.
            if taken := budget.try_take(self._frame_pixels):
                self._reading = self._start_read(taken)
            while self._pending and (len(self._pending) >= self._ways.current.window or self._pending[0][2].done()):
                yield await self._next()
        while self._pending:
            yield await self._next()

    def _start_read(self, taken: int) -> asyncio.Future[tuple[int, Frame | None]]:
        """The next frame's read, started on the bulk decode pool, its `taken` pixels held until its line is out."""
        self._holds.append(taken)
        most = min(READ_AT_MOST, max(1, self._pipeline.server.max_video_frames + 1 - self._items_read))
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._pipeline.decoder.bulk_pool, _read_needed, self._frames, most)

    async def _next(self) -> tuple[int, float, Prediction | None]:
        index, time_s, task = self._pending.popleft()
        prediction = await task
        if prediction is not None:
            self._ways.answered()
        if self._holds:
            self._pipeline.decoder.pixels.give_back(self._holds.popleft())
        return index, time_s, prediction

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ways.close()
        while self._holds:
            self._pipeline.decoder.pixels.give_back(self._holds.popleft())
        for _, _, task in self._pending:
            task.cancel()
        if self._reading is None:
            _close_reader(self._frames)
        elif self._reading.done():
            self._after_read(self._reading)
        else:
            self._reading.add_done_callback(self._after_read)

    def _after_read(self, reading: asyncio.Future[tuple[int, Frame | None]]) -> None:
        if not reading.cancelled():
            reading.exception()  # taken: a read that fails after the client left is nobody's news
        _close_reader(self._frames)


# Items one read may take (`_read_needed`): a read in flight cannot be interrupted, so this bounds the decoding
# done after a client has gone (or the clip has failed) at a large `vid_stride` (up to 1000): 32 4K frames, not 999.
READ_AT_MOST = 32


def _read_needed(frames: Iterator[Frame], most: int) -> tuple[int, Frame | None]:
    """The next frame to answer (one to detect, or a damaged packet's place; None at the end) and how many items
    were read for it: the frames `vid_stride` skips before it (never converted: `read_frames(keep_skipped=False)`)
    and itself. At most `most` items: the last one read is returned, whatever it is (one past the clip's frame limit
    is refused by the caller, exactly there; a skipped frame at `READ_AT_MOST` is given up and the next read goes on).
    Why not one `next` a call: each call is a round trip through the event loop and a thread hand-over; with
    `--vid-stride 3` those took about 13 % of the GIL time a clip's request held in the server (py-spy, 720p H.264,
    2026-12-06), for frames nothing is done with."""
    read = 0
    for frame in frames:
        read += 1
        if frame.run or frame.pixels is DAMAGED or read >= most:
            return read, frame
    return read, None


def _close_reader(frames: Iterator[Any]) -> None:
    close: Callable[[], None] | None = getattr(frames, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()


def _trace_attributes(result: InferenceResult, decoded: DecodedImage, detections: Detections) -> dict[str, Any]:
    """What a `detector.predict` span says about the prediction (inference.tracing)."""
    model = result.model
    return {
        "detector.model.version": str(model.get("version", "")),
        "detector.backend": str(model.get("backend", "")),
        "detector.batch_size": result.batch_size,
        "detector.image.width": decoded.width,
        "detector.image.height": decoded.height,
        "detector.detections": len(detections),
    }
