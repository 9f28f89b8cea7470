"""Dynamic micro-batching: concurrent requests share one `predict_batch` call.

Requests are admitted by `reserve()` once their body has arrived (uploads are bounded separately,
api/admission/uploads.py,
so slow uploaders never hold these places), against a bound of `queue_size` requests being decoded or waiting;
past it they get 503 + Retry-After at once. An admitted request is decoded elsewhere, then `submit()`s its image to
a FIFO served by `workers` model threads (0: as many as the served backend has slots, `follow()`). A worker takes
the oldest job, waits up to `max_wait_ms` for up to `max_batch - 1` more (only while more admitted requests are on
their way, so a lone request never waits), and runs them as one batch.

An answer must not depend on what else is in flight, so one backend call only takes images that get the same
network input shape: in rect mode the letterbox rectangle is the max over the batch, and a companion of another
aspect ratio would change the padding (and the detections). Jobs are grouped by (letterbox shape, conf, iou,
max_det); same-sized camera frames, the common case, still share one call. Within a call each image's input is
exactly what it would be alone, and the backends compute batch items independently (a test checks that 64
concurrent requests over 8 shapes equal the same requests one by one, exactly).

A tiled image is one job carrying all its tiles (`submit_together`), on one queue place: they run as one call of
their own, as the library runs them, never beside other jobs.

Library errors raised at inference are the server's fault (the image was already accepted): they reach the caller
as 503 (`ModelUnavailableError`: model/backend unusable) or 500 (`InferenceFailedError`), never as 4xx.

Inference runs only in these worker threads, never on the event loop; the loop awaits a future.

Fair sharing (issue 21): batch items and video frames are *bulk* work. They may hold at most `bulk_queue_share` of
the queue's places (a batch or a clip waits in line for room, api/inference/pipeline.py `wait_for_room`), so a
heavy client never fills the queue that decides whether single-image requests are shed; and workers take jobs
from two lanes, single images first: while both lanes wait, `single_priority` single images are taken per bulk
image (a tiled image counts as its tiles, either way), so a 16-image batch queued ahead of a /predict delays it by
at most one backend call, and bulk work still advances under a steady stream of singles, also while a deep lane of
singles overlaps them on two threads (that overlap pauses when a bulk job is owed). While a single image is still
being decoded and only bulk work waits, a worker holds the bulk job back up to `bulk_hold_ms`, so the single does
not arrive to find a bulk call just started:
measured on the 2-core host with 4 batch or 9 video clients, the single's queue_wait p50 went from 1.9-3.0 ms to
1.2-1.5 ms and its p50 from 14-20 ms to 13-16 ms (idle: 10 ms).

A `BackendFailedError` (a GPU fault: the backend is out of service for the life of the process) is also reported
to `on_failure`, which the service uses to go unhealthy and exit (api/service.py).

Micro-batching pays on a GPU (one launch for many images) and not on a CPU, where a batch costs about the sum of
its images and OpenVINO compiles one static model per batch size: on the 2-core benchmark machine, c=4 on three
photos gave 45 req/s with one image per call against 35 (first pass, compiling) and 47 (warm) batched, and OpenVINO's
throughput streams with two workers gave 43-51 req/s but 33 ms instead of 23 at c=1 (`benchmarks/peers.py` photos,
INT8 model). So `micro_batching: auto` (the default) batches only models on a GPU.

Single images alone (`singles_alone`: OpenVINO's `hint: auto`, the shipped default): the backend has a model thread
per throughput stream (2 on 2 cores), but single images and batch items run on the first one, one call at a time, a
single waiting for the calls in flight to finish, so they get the latency model and every core as with `hint:
latency`; video frames also run on the other threads, beside each other on the throughput streams, once no single
image has come for `SINGLES_QUIET_S`. Why this split, measured on the 2-core AMD host with the 640 px INT8 model
(interleaved A/B against `hint: latency`): `/predict/video` gained 9-11 % (75.5 -> 82.1 frames/s on the generated
clip, 57.8 -> 64.1 on H.264: one frame on one core costs less CPU than one frame on two); single images over HTTP at
c=1/4/8 were equal, and so were they while a clip streamed, once they ran alone (52 against 31 ms at p50 when they
took a stream beside a frame); batch items lost 14 % on the streams (55.5 against 64.4 images/s for 16 photos: their
JPEG decoding needs the cores), so they stay on the latency model too.

A queue of single images (`DEEP_SINGLES` waiting in the lane) is the exception: then singles also start on the
other threads, beside each other on the (unpinned) throughput streams, never beside bulk work. A/B on the same host
and model, two services interleaved: c=8 47.1/51.1 -> 54.9/60.3 req/s, c=4 51.1/58.5 -> 57.1/60.8, c=1 equal
(docs/performance.md, "Under load").
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from api.errors import (
    ApiError,
    GatewayTimeoutError,
    InferenceFailedError,
    ModelUnavailableError,
    ServiceUnavailableError,
)
from api.model.slot import DetectorLike, LoadedModel, ModelSlot
from api.monitoring.metrics import Metrics
from detector.errors import (
    BackendFailedError,
    BackendUnavailableError,
    DetectorError,
    MissingDependencyError,
    ModelLoadError,
)
from detector.runtime import Detections, Timings

log = logging.getLogger("api.inference.batching")

# Per-class confidence thresholds of a request, (class id, conf) pairs in id order; () for none.
ClassThresholds = tuple[tuple[int, float], ...]


class Thresholds(NamedTuple):
    """A request's thresholds: requests share a backend call only under equal ones (hashable, a tuple)."""

    conf: float | None  # None: the model's own per-class thresholds (over the configured conf)
    iou: float
    max_det: int
    class_conf: ClassThresholds = ()  # the request's `conf_per_class`


CallKey = tuple[tuple[int, ...], Thresholds]  # (network input shape of the image, thresholds): one backend call each


@dataclass(frozen=True)
class InferenceResult:
    """One request's result and what it cost."""

    detections: Detections
    model: dict[str, Any]  # describe() of the model that actually ran (matters during a reload)
    batch_size: int
    timings_ms: dict[str, float]  # queue_wait, preprocess, inference, postprocess (the latter three per batch)


class Reservation:
    """A place in the queue, held from admission until the response is built; release() is idempotent."""

    def __init__(
        self, batcher: MicroBatcher, bulk: bool = False, overlap: bool = False, one_thread: bool = False
    ) -> None:
        self._batcher = batcher
        self.bulk = bulk
        self.overlap = overlap  # a video frame: may run beside other calls under `singles_alone` (`_Lanes`)
        # A video frame to run on the model's one-thread twin where it is loaded (`Detector.one_thread`; a clip
        # that measured that way faster, api/inference/pipeline.py `FrameStream`), on the worker's own thread.
        self.one_thread = one_thread
        self.waiting = True  # counted in the queue depth until a worker picks the job up
        self.active = True  # counted until the request is done (shutdown waits for these)

    def release(self) -> None:
        self._batcher._release(self, picked_only=False)


@dataclass(eq=False)
class _Job:
    images: list[npt.NDArray[np.uint8]]  # one image, or the views one tiled image is cut into (`submit_together`)
    key: Thresholds
    reservation: Reservation
    future: Future[list[InferenceResult]] = field(default_factory=Future)  # one result per image, in order
    enqueued_at: float = field(default_factory=time.perf_counter)


_STOP = None  # queue sentinel: one per worker at shutdown
# `singles_alone`: video frames overlap only after this long without a single image (the module's docstring).
SINGLES_QUIET_S = 1.0
# `singles_alone`: while this many single images wait in the lane (more than one call can take), singles also start
# on the other model threads, beside each other, on the throughput streams; never beside a bulk call.
DEEP_SINGLES = 2


class _Lanes:
    """Two FIFOs (single images, bulk) behind `queue.Queue`'s get/put/get_nowait: singles first, except that after
    `single_priority` singles in a row, a waiting bulk job goes next. Thread-safe.

    While a single image is on its way (admitted, still being decoded) and only bulk work waits, a worker holds the
    bulk job back for up to `bulk_hold_s`: on a CPU, a bulk call started now would share the cores with that
    image's decode and then make it wait a whole call (measured below, `MicroBatcher`)."""

    def __init__(self, single_priority: int, bulk_hold_s: float = 0.0, singles_coming: Callable[[], int] = int):
        self.single_priority = max(1, single_priority)
        self.bulk_hold_s = bulk_hold_s
        self.singles_coming = singles_coming  # singles admitted and not yet in the lane (being decoded)
        # Single images run alone (`Backend.singles_alone`): a single waits for the calls in flight to finish, no
        # call starts while it runs, and video frames overlap only while singles are quiet.
        self.singles_alone = False
        self._running = 0  # calls started with a worker's first job and not finished
        self._last_single = float("-inf")  # when the last single image was queued (perf_counter)
        self._singles_running = 0
        self._single: deque[_Job | None] = deque()
        self._bulk: deque[_Job | None] = deque()
        self._singles_in_a_row = 0
        self._ready = threading.Condition()

    def put(self, job: _Job | None, bulk: bool = False) -> None:
        with self._ready:
            (self._bulk if bulk else self._single).append(job)
            if not bulk:
                self._last_single = time.perf_counter()
            self._ready.notify_all()

    def get(self, timeout: float | None = None, worker: int = 0) -> _Job | None:
        """Worker `worker`'s first job (`timeout` None), counted as a call until `done`, or a companion for its
        batch (`timeout` set: no rule but the lanes' order)."""
        with self._ready:
            if timeout is not None:
                if not self._ready.wait_for(lambda: bool(self._single or self._bulk), timeout=timeout):
                    raise queue.Empty
                return self._take()
            while True:
                while not self._may_start(worker):
                    self._ready.wait(self._recheck_s())
                self._hold_bulk()  # releases the lock while it waits: look again after it
                if self._may_start(worker):
                    break
            job = self._take(worker)
            if job is None:  # a stop sentinel
                return job
            self._running += 1
            if not job.reservation.bulk:
                self._singles_running += 1
                # The calls already running finish first (none starts meanwhile), unless this single joins others
                # because the lane is deep (then no bulk call was running: `_single_may_start`).
                if self.singles_alone and self._singles_running == 1:
                    self._ready.wait_for(lambda: self._running == 1)
            return job

    def get_nowait(self) -> _Job | None:
        with self._ready:
            if not (self._single or self._bulk):
                raise queue.Empty
            return self._take()

    def done(self, first: _Job) -> None:
        """The call a worker started with `first` finished."""
        with self._ready:
            self._running -= 1
            self._singles_running -= not first.reservation.bulk
            # Only when a worker may now start a job, or waits for the calls in flight to end (it counts itself in
            # `_running`). With nothing queued and nothing running, a wake-up only made the idle workers look and
            # sleep again, taking the GIL just as the event loop was being woken for this call's answer.
            if self._single or self._bulk or self._running:
                self._ready.notify_all()

    # With `singles_alone`, worker 0 runs every single image and batch item, one call at a time and on one infer
    # request, as the latency hint alone did, and the other workers only video frames, beside it, once single images
    # have been quiet for `SINGLES_QUIET_S`, and single images beside single images while `DEEP_SINGLES` wait.

    def _may_start(self, worker: int) -> bool:
        return self._single_may_start(worker) or self._bulk_may_start(worker)

    def _single_may_start(self, worker: int | None) -> bool:
        if not self._single:
            return False
        if self._single[0] is None or worker is None or not self.singles_alone:  # a stop sentinel always passes
            return True
        if worker == 0 and not self._singles_running:
            return True
        # A deep lane overlaps singles, but not once a bulk job is owed (`single_priority` singles in a row): bulk
        # work never starts beside a single, and with two threads leapfrogging a single was nearly always running,
        # so a batch or clip waited until the singles stopped (a 2-image batch 25 s, until the load ended).
        owed = self._bulk and self._singles_in_a_row >= self.single_priority
        return not owed and len(self._single) >= DEEP_SINGLES and self._running == self._singles_running > 0

    def _bulk_may_start(self, worker: int | None) -> bool:
        if not self._bulk:
            return False
        head = self._bulk[0]
        if head is None or worker is None or not self.singles_alone:
            return True
        if self._singles_running:
            return False
        if worker == 0 and not self._running:
            return True
        return head.reservation.overlap and self._singles_quiet()

    def _singles_quiet(self) -> bool:
        return time.perf_counter() - self._last_single >= SINGLES_QUIET_S and self.singles_coming() <= 0

    def _recheck_s(self) -> float | None:
        """How long a worker may sleep before the quiet rule could let it start a video frame (nothing notifies)."""
        head = self._bulk[0] if self._bulk else None
        if self.singles_alone and head is not None and head.reservation.overlap and not self._singles_running:
            return 0.05
        return None

    def _hold_bulk(self) -> None:
        """Wait (lock released) while only bulk work is here and a single image is being decoded, up to
        `bulk_hold_s`. Polled: a single whose decode fails never arrives, and nothing would notify."""
        deadline = time.perf_counter() + self.bulk_hold_s
        while not self._single and self._bulk and self._bulk[0] is not None and self.singles_coming() > 0:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._ready.wait(min(remaining, 0.002))

    def _take(self, worker: int | None = None) -> _Job | None:
        """The next job worker `worker` may start (None: a companion, which joins a call already counted)."""
        single, bulk = self._single_may_start(worker), self._bulk_may_start(worker)
        if single and not (bulk and self._singles_in_a_row >= self.single_priority):
            job = self._single.popleft()
            # A tiled image counts as its tiles: `single_priority` is per image, and it is that many images' work.
            self._singles_in_a_row += len(job.images) if job is not None else 1
            return job
        job = self._bulk.popleft()
        # Shares by images both ways: after a bulk job of n images (a tiled frame), n x single_priority single
        # images go before the next bulk job, as after n bulk jobs of one.
        self._singles_in_a_row = -(len(job.images) - 1) * self.single_priority if job is not None else 0
        return job

    def singles_queued(self) -> int:
        return len(self._single)


class MicroBatcher:
    def __init__(
        self,
        slot: ModelSlot,
        *,
        max_batch: int,
        max_wait_ms: float,
        micro_batching: str = "always",
        queue_size: int,
        workers: int,
        metrics: Metrics | None = None,
        on_failure: Callable[[LoadedModel, Exception], None] | None = None,
        bulk_queue_share: float = 0.5,
        single_priority: int = 4,
        bulk_hold_ms: float = 0.0,
    ) -> None:
        self.slot = slot
        self.max_batch = max_batch
        self.micro_batching = micro_batching
        self.max_wait_s = max_wait_ms / 1000.0
        self.queue_size = queue_size
        self.metrics = metrics
        self.workers = workers  # 0: follow the backend's slots
        self.on_failure = on_failure
        # Bounded by reservations, not by the lanes themselves.
        self._queue = _Lanes(single_priority, bulk_hold_ms / 1000.0, self._singles_coming)
        self.bulk_limit = max(1, int(queue_size * bulk_queue_share))
        self._lock = threading.Condition()
        self._waiting = 0
        self._bulk_waiting = 0
        self._active = 0
        self._closing = False
        self._stopped = False
        self._threads: list[threading.Thread] = []
        self._grow(max(workers, 1))
        if metrics is not None:
            metrics.set_sources(queue_depth=lambda: self._waiting, in_flight=lambda: self._active)

    def _grow(self, count: int) -> None:
        with self._lock:
            if self._stopped:
                return
            while len(self._threads) < count:
                index = len(self._threads)
                t = threading.Thread(target=self._worker, args=(index,), name=f"model-worker-{index}", daemon=True)
                self._threads.append(t)
                t.start()

    def follow(self, model: LoadedModel) -> None:
        """With `workers: 0`, run as many model threads as `model`'s backend has slots, so a TensorRT backend's two
        execution contexts both work at once. Never shrinks: after a reload to a one-slot backend the spare
        threads only wait for the slot that backend has."""
        if self.workers == 0:
            self._grow(int(model.info.get("slots") or 1))
        self._queue.singles_alone = bool(model.info.get("singles_alone"))

    def _singles_coming(self) -> int:
        """Single images admitted and not yet in a lane: being decoded (a heuristic read without the lock)."""
        return self._waiting - self._bulk_waiting - self._queue.singles_queued()

    @property
    def closing(self) -> bool:
        """Shutting down: new requests are refused."""
        return self._closing

    @property
    def depth(self) -> int:
        """Requests admitted and not yet picked up by a worker."""
        return self._waiting

    # -- request side (event loop) ------------------------------------------------------------------------------

    def reserve(self, bulk: bool = False, overlap: bool = False, one_thread: bool = False) -> Reservation:
        """Admit one request (`bulk`: a batch item or a video frame; `overlap`: a video frame, which may run beside
        other calls, `_Lanes`; `one_thread`: a video frame for the model's one-thread twin, `Reservation`) or refuse
        at once with 503 + Retry-After (never blocks)."""
        with self._lock:
            self._check_room(bulk)
            self._waiting += 1
            self._bulk_waiting += bulk
            self._active += 1
            return Reservation(self, bulk, overlap, one_thread)

    def has_room(self, bulk: bool = False, count: int = 1) -> bool:
        """Whether `count` reservations would be admitted now (counts no rejection)."""
        with self._lock:
            if self._closing or self._waiting + count > self.queue_size:
                return False
            return not bulk or self._bulk_waiting + count <= self.bulk_limit

    def _check_room(self, bulk: bool) -> None:
        if self._closing:
            self._reject("shutdown")
            raise ServiceUnavailableError("the server is shutting down; retry on another instance", 5)
        if bulk and self._bulk_waiting >= self.bulk_limit:
            self._reject("bulk_queue_full")
            raise ServiceUnavailableError(
                f"server is busy: {self._bulk_waiting} batch or video images are already queued (limit "
                f"{self.bulk_limit}, the rest of the queue is kept for single images); retry after the delay in "
                "the Retry-After header"
            )
        if self._waiting >= self.queue_size:
            self._reject("queue_full")
            raise ServiceUnavailableError(
                f"server is busy: {self._waiting} requests are already queued (limit {self.queue_size}); "
                "retry after the delay in the Retry-After header"
            )

    async def submit(
        self,
        reservation: Reservation,
        image: npt.NDArray[np.uint8],
        key: Thresholds,
        timeout_s: float,
    ) -> InferenceResult:
        return (await self.submit_together(reservation, [image], key, timeout_s))[0]

    async def submit_together(
        self,
        reservation: Reservation,
        images: list[npt.NDArray[np.uint8]],
        key: Thresholds,
        timeout_s: float,
    ) -> list[InferenceResult]:
        """`images` (the tiles of one image) as one job on one queue place: one `predict_batch` call of their own,
        as the library runs them (split only where the backend takes smaller batches); a result per image.

        Why not a job per tile: on a CPU each would be its own call of batch 1, and a batch of tiles is cheaper per
        tile (256 px INT8 model on the 2-core AMD host: 3.3 ms a tile alone, 2.4 ms in a batch of 36); and a place
        per tile made a clip's frame with more tiles than the bulk share (32 places by default) wait out the
        request timeout and fail on an idle server. A tiled image's work is bounded by `inference.tiling.max_tiles`
        and the pixel budget instead."""
        if self._stopped:
            raise ServiceUnavailableError("the server is shutting down; retry on another instance", 5)
        job = _Job(list(images), key, reservation)
        self._queue.put(job, reservation.bulk)
        try:
            # Cancelling the awaited wrapper (on timeout) cancels the job's future; a worker skips cancelled jobs.
            return await asyncio.wait_for(asyncio.wrap_future(job.future), timeout_s)
        except TimeoutError:
            raise GatewayTimeoutError(
                f"inference did not finish within the request timeout of {timeout_s:g} s (server overloaded); "
                "retry later"
            ) from None

    def _reject(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.rejected.labels(reason=reason).inc()

    def _release(self, reservation: Reservation, picked_only: bool) -> None:
        with self._lock:
            if reservation.waiting:
                reservation.waiting = False
                self._waiting -= 1
                self._bulk_waiting -= reservation.bulk
            if not picked_only and reservation.active:
                reservation.active = False
                self._active -= 1
                self._lock.notify_all()

    # -- worker side (threads) ----------------------------------------------------------------------------------

    def _worker(self, index: int) -> None:
        while True:
            first = self._queue.get(worker=index)
            if first is _STOP:
                return
            batch, stop = self._collect(first)
            try:
                self._run(batch)
            except Exception:  # a bug here must not kill the worker and hang every later request
                log.exception("model worker failed on a batch of %d", len(batch))
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(RuntimeError("inference failed"))
            finally:
                self._queue.done(first)
            if stop:
                return

    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        """The first job plus whatever arrives within max_wait_ms, up to max_batch; True if a stop was seen.

        The window is only spent while other admitted requests are on their way (being read or decoded, or
        queued): a lone request runs at once instead of paying max_wait_ms for company that cannot come.
        """
        self._release(first.reservation, picked_only=True)
        batch = [first]
        model = self.slot.current
        limit = batch_limit(self.max_batch, self.micro_batching, model.info if model else {})
        deadline = time.perf_counter() + self.max_wait_s
        while len(batch) < limit and self._waiting > 0:
            remaining = deadline - time.perf_counter()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                return batch, True
            self._release(job.reservation, picked_only=True)
            batch.append(job)
        return batch, False

    def _run(self, batch: list[_Job]) -> None:
        # False when the request already timed out and cancelled its future: skip the wasted work.
        live = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            with self.slot.use() as model:
                groups: dict[tuple[CallKey, bool], list[_Job]] = defaultdict(list)
                for job in live:
                    one_thread = job.reservation.one_thread
                    if len(job.images) > 1:  # a tiled image: a call of its own, exactly as the library runs it
                        groups[((id(job),), job.key), one_thread].append(job)
                    else:
                        groups[(input_shape(model, job.images[0]), job.key), one_thread].append(job)
                for ((_, key), one_thread), jobs in groups.items():
                    # The twin only where it is loaded already: a reload's new model has none until a clip loads it.
                    detector = (model.one_thread(load=False) if one_thread else None) or model.detector
                    self._call(model, detector, key, jobs)
        except Exception as exc:  # no model in the slot (a bug guard) or a shape check that failed
            for job in live:
                if not job.future.done():
                    job.future.set_exception(server_fault(exc))

    def _call(self, model: LoadedModel, detector: DetectorLike, key: Thresholds, jobs: list[_Job]) -> None:
        conf, iou, max_det, class_conf = key
        names = model.info.get("names")
        if names:  # ids checked against the model of the request's time; one swapped in since may lack some
            class_conf = tuple((c, v) for c, v in class_conf if str(c) in names)
        started = time.perf_counter()
        timings = Timings()
        images = [image for job in jobs for image in job.images]
        counts = [len(job.images) for job in jobs]
        try:
            results = detector.predict_batch(
                images,
                conf=conf,
                iou=iou,
                max_det=max_det,
                timings=timings,
                conf_per_class=dict(class_conf) or None,
            )
        except Exception as exc:
            for job in jobs:
                job.future.set_exception(server_fault(exc))
            if isinstance(exc, BackendFailedError) and self.on_failure is not None:
                self.on_failure(model, exc)
            return
        finally:
            del images  # the pixels are counted in the request's budget: do not keep them alive here
            for job in jobs:
                job.images = []
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(results))
            self.metrics.inference.observe(time.perf_counter() - started)
        stage = timings.as_dict()
        at = 0
        for job, count in zip(jobs, counts, strict=True):
            wait_ms = (started - job.enqueued_at) * 1e3
            if self.metrics is not None:
                self.metrics.queue_wait.observe(wait_ms / 1e3)
            timings_ms = {"queue_wait": round(wait_ms, 3), **stage}
            found = results[at : at + count]
            at += count
            job.future.set_result([InferenceResult(d, model.info, len(results), timings_ms) for d in found])

    # -- shutdown -----------------------------------------------------------------------------------------------

    def close(self, drain_timeout_s: float) -> None:
        """Refuse new requests, let admitted ones finish (up to the timeout), then stop the workers."""
        with self._lock:
            self._closing = True
            if not self._lock.wait_for(lambda: self._active == 0, timeout=drain_timeout_s):
                log.warning(
                    "shutdown: %d requests still running after %.1f s; stopping anyway", self._active, drain_timeout_s
                )
            self._stopped = True
        for _ in self._threads:
            self._queue.put(_STOP)
        for t in self._threads:
            t.join(timeout=drain_timeout_s)
        # Jobs submitted after the stop (only possible if the drain timed out) must not hang their requests.
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(ServiceUnavailableError("the server is shutting down", 5))


def batch_limit(max_batch: int, micro_batching: str, info: dict[str, Any]) -> int:
    """Most images per backend call for the model described by `info`: `max_batch` (capped by the backend's own
    limit), or 1 when `micro_batching` is `never`, or `auto` and the model is not on a GPU."""
    on_gpu = str(info.get("device", "")).startswith("cuda") or info.get("backend") == "tensorrt"
    if micro_batching == "never" or (micro_batching == "auto" and not on_gpu):
        return 1
    backend_max = info.get("max_batch")
    return min(max_batch, int(backend_max)) if backend_max else max_batch


def input_shape(model: LoadedModel, image: npt.NDArray[np.uint8]) -> tuple[int, ...]:
    """The network input (h, w) this image gets alone (its letterbox rectangle in rect mode, else the square).

    Models that cannot say (test wrappers) fall back to the image's own shape: equal shapes letterbox equally.
    """
    batch_shape = getattr(model.detector, "batch_shape", None)
    rect = model.info.get("rect", True)
    if batch_shape is None:
        return tuple(image.shape[:2])
    if not rect:
        return ()  # every image gets the model's square input: any companions are fine
    return tuple(batch_shape([image]))


def server_fault(exc: Exception) -> Exception:
    """What an exception raised while running an accepted image means for its client."""
    if isinstance(exc, ModelLoadError | BackendUnavailableError | MissingDependencyError):
        log.error("the model failed at inference: %s", exc)
        return ModelUnavailableError(f"the model cannot run right now ({type(exc).__name__}: {exc}); retry later", 5)
    if isinstance(exc, DetectorError):  # e.g. an output shape the post-processing cannot read
        log.error("inference failed: %s: %s", type(exc).__name__, exc)
        return InferenceFailedError(f"inference failed on the server ({type(exc).__name__}: {exc})")
    if isinstance(exc, ApiError):
        return exc
    # Anything else (a closed backend's AttributeError, a library's own error type): logged with its traceback,
    # answered without its text, which may carry internals.
    log.error("inference failed", exc_info=exc)
    return InferenceFailedError(f"inference failed on the server ({type(exc).__name__}); the incident was logged")
