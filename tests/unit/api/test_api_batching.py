"""MicroBatcher with a fake model: batching, grouping by thresholds, admission, timeouts, draining."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from api.errors import GatewayTimeoutError, InferenceFailedError, ServiceUnavailableError
from api.inference.batching import MicroBatcher, Reservation, Thresholds, _Job, _Lanes, batch_limit
from api.model.slot import LoadedModel, ModelSlot
from tests.fakes import FakeDetector

DEFAULT = Thresholds(0.25, 0.7, 300)


def image(value: int) -> npt.NDArray[np.uint8]:
    return np.full((4, 4, 3), value, np.uint8)


def make(det: FakeDetector, **kw: Any) -> MicroBatcher:
    slot = ModelSlot()
    slot.swap(LoadedModel(det, "fake.onnx"))
    opts: dict[str, Any] = {"max_batch": 8, "max_wait_ms": 50, "queue_size": 64, "workers": 1}
    return MicroBatcher(slot, **(opts | kw))


async def one(
    b: MicroBatcher,
    value: int,
    key: Thresholds = DEFAULT,
    timeout: float = 5,
    reservation: Reservation | None = None,
) -> Any:
    r = reservation or b.reserve()
    try:
        return await b.submit(r, image(value), key, timeout)
    finally:
        r.release()


def test_concurrent_requests_share_one_call_and_get_their_own_result() -> None:
    det = FakeDetector(echo=True)
    b = make(det)

    async def main() -> list[Any]:
        rs = [b.reserve() for _ in range(8)]  # as HTTP requests arriving together: admitted before any is queued
        return await asyncio.gather(*(one(b, v, reservation=rs[v]) for v in range(8)))

    results = asyncio.run(main())
    b.close(1)
    assert [round(float(r.detections.confidence[0]) * 255) for r in results] == list(range(8))
    assert det.calls == [(8, 0.25, 0.7, 300)]
    assert {r.batch_size for r in results} == {8}
    assert all(r.model["name"] == "fake" for r in results)


def test_a_tiled_images_views_are_one_call_of_their_own_on_one_place() -> None:
    det = FakeDetector(echo=True)
    b = make(det, queue_size=2)  # fewer places than the 5 views: they need one

    async def main() -> tuple[list[Any], Any]:
        tiled, single = b.reserve(), b.reserve()  # arriving together, as micro-batching would join them
        try:
            return await asyncio.gather(
                b.submit_together(tiled, [image(v) for v in (10, 11, 12, 13, 14)], DEFAULT, 5),
                b.submit(single, image(20), DEFAULT, 5),
            )
        finally:
            tiled.release()
            single.release()

    views, alone = asyncio.run(main())
    b.close(1)
    assert [round(float(r.detections.confidence[0]) * 255) for r in views] == [10, 11, 12, 13, 14]
    assert round(float(alone.detections.confidence[0]) * 255) == 20
    assert sorted(det.calls) == [(1, 0.25, 0.7, 300), (5, 0.25, 0.7, 300)]  # never one call of 6
    assert {r.batch_size for r in views} == {5} and alone.batch_size == 1


@pytest.mark.parametrize(
    ("mode", "info", "limit"),
    [
        ("auto", {"backend": "openvino", "device": "cpu"}, 1),
        ("auto", {"backend": "onnxruntime", "device": "cuda"}, 8),
        ("auto", {"backend": "tensorrt", "device": "cuda:1", "max_batch": 4}, 4),
        ("always", {"backend": "openvino", "device": "cpu"}, 8),
        ("never", {"backend": "tensorrt", "device": "cuda:0"}, 1),
    ],
)
def test_batch_limit_batches_on_gpus_by_default(mode: str, info: dict[str, Any], limit: int) -> None:
    assert batch_limit(8, mode, info) == limit


def test_with_micro_batching_never_each_request_is_its_own_call() -> None:
    det = FakeDetector(echo=True)
    b = make(det, micro_batching="never")

    async def main() -> list[Any]:
        rs = [b.reserve() for _ in range(4)]
        return await asyncio.gather(*(one(b, v, reservation=rs[v]) for v in range(4)))

    results = asyncio.run(main())
    b.close(1)
    assert [round(float(r.detections.confidence[0]) * 255) for r in results] == list(range(4))
    assert det.calls == [(1, 0.25, 0.7, 300)] * 4
    assert {r.batch_size for r in results} == {1}


def test_different_thresholds_are_grouped_not_mixed() -> None:
    det = FakeDetector(echo=True)
    b = make(det)
    keys = [Thresholds(0.25, 0.7, 300), Thresholds(0.5, 0.7, 300), Thresholds(0.25, 0.5, 10)]

    async def main() -> list[Any]:
        rs = [b.reserve() for _ in range(6)]
        return await asyncio.gather(*(one(b, v, keys[v % 3], reservation=rs[v]) for v in range(6)))

    asyncio.run(main())
    b.close(1)
    assert sorted(det.calls) == sorted((2, *k[:3]) for k in keys)


def test_different_per_class_thresholds_are_grouped_not_mixed() -> None:
    det = FakeDetector(echo=True)
    b = make(det)
    keys = [
        Thresholds(None, 0.7, 300, ((0, 0.4),)),
        Thresholds(None, 0.7, 300, ((0, 0.6),)),
        Thresholds(None, 0.7, 300),
    ]

    async def main() -> list[Any]:
        rs = [b.reserve() for _ in range(6)]
        return await asyncio.gather(*(one(b, v, keys[v % 3], reservation=rs[v]) for v in range(6)))

    asyncio.run(main())
    b.close(1)
    assert [n for n, *_ in det.calls] == [2, 2, 2]
    assert sorted(det.class_confs, key=str) == sorted([{0: 0.4}, {0: 0.6}, {}], key=str)


def test_a_lone_request_does_not_wait_for_company() -> None:
    det = FakeDetector(echo=True)
    b = make(det, max_wait_ms=1000)
    started = time.perf_counter()
    asyncio.run(one(b, 1))
    assert time.perf_counter() - started < 0.5  # not the 1 s window: nobody else was admitted
    b.close(1)
    assert det.calls == [(1, 0.25, 0.7, 300)]


def test_max_batch_caps_a_call() -> None:
    det = FakeDetector(echo=True)
    b = make(det, max_batch=3)

    async def main() -> None:
        rs = [b.reserve() for _ in range(7)]
        await asyncio.gather(*(one(b, v, reservation=rs[v]) for v in range(7)))

    asyncio.run(main())
    b.close(1)
    assert sorted(n for n, *_ in det.calls) == [1, 3, 3]


def test_admission_is_bounded_and_released() -> None:
    b = make(FakeDetector(echo=True), queue_size=2)
    r1, r2 = b.reserve(), b.reserve()
    with pytest.raises(ServiceUnavailableError) as exc:
        b.reserve()
    assert exc.value.headers == {"Retry-After": "1"} and "busy" in exc.value.detail
    assert b.depth == 2
    r1.release()
    r1.release()  # idempotent
    assert b.depth == 1
    b.reserve().release()
    r2.release()
    assert b.depth == 0
    b.close(1)


def test_timeout_is_a_504_and_the_job_is_skipped() -> None:
    gate = threading.Event()
    det = FakeDetector(echo=True, gate=gate)
    b = make(det, max_wait_ms=0)

    async def main() -> None:
        first = asyncio.ensure_future(one(b, 1))  # occupies the worker until the gate opens
        await asyncio.sleep(0.05)
        with pytest.raises(GatewayTimeoutError, match=r"request timeout of 0\.1 s"):
            await one(b, 2, timeout=0.1)
        gate.set()
        await first

    asyncio.run(main())
    b.close(1)
    assert det.calls == [(1, 0.25, 0.7, 300)]  # the timed-out job never reached the model


def test_model_errors_reach_the_caller_as_server_errors() -> None:
    b = make(FakeDetector(fail=ValueError("boom")))
    with pytest.raises(InferenceFailedError, match="ValueError") as info:
        asyncio.run(one(b, 1))
    assert info.value.status == 500 and "boom" not in info.value.detail  # an unknown error's text may leak internals
    b.close(1)


def test_close_drains_admitted_requests_then_refuses() -> None:
    det = FakeDetector(echo=True, delay_s=0.2)
    b = make(det, max_wait_ms=0)
    results: list[Any] = []

    def client() -> None:
        results.append(asyncio.run(one(b, 7)))

    t = threading.Thread(target=client)
    t.start()
    time.sleep(0.05)  # admitted and running
    b.close(drain_timeout_s=5)
    t.join()
    assert len(results) == 1 and det.calls
    with pytest.raises(ServiceUnavailableError, match="shutting down"):
        b.reserve()


def test_swapped_model_is_closed_after_its_last_borrower() -> None:
    old, new = FakeDetector(echo=True), FakeDetector(echo=True)
    slot = ModelSlot()
    slot.swap(LoadedModel(old, "old"))
    with slot.use() as borrowed:
        slot.swap(LoadedModel(new, "new"))
        assert not old.closed  # still in use
        assert borrowed.detector is old
    slot.wait_closed()
    assert old.closed and not new.closed
    with slot.use() as current:
        assert current.detector is new


# Fair sharing (issue 21): bulk work (batch items, video frames) cannot fill the queue or run ahead of singles.


class OrderRecorder(FakeDetector):
    def __init__(self, gate: threading.Event) -> None:
        super().__init__(echo=True, gate=gate)
        self.order: list[int] = []

    def predict_batch(self, images: Any, *args: Any, **kwargs: Any) -> Any:
        result = super().predict_batch(images, *args, **kwargs)
        self.order += [int(img[0, 0, 0]) for img in images]
        return result


def test_bulk_work_holds_at_most_its_share_of_the_queue() -> None:
    b = make(FakeDetector(), queue_size=8, bulk_queue_share=0.5)
    bulk = [b.reserve(bulk=True) for _ in range(4)]
    with pytest.raises(ServiceUnavailableError, match="batch or video images are already queued"):
        b.reserve(bulk=True)
    singles = [b.reserve() for _ in range(4)]  # before: the bulk work could take every place
    with pytest.raises(ServiceUnavailableError):
        b.reserve()
    bulk[0].release()
    bulk.append(b.reserve(bulk=True))  # a place given back is a place again
    for r in bulk + singles:
        r.release()
    b.close(1)


Job = Callable[[MicroBatcher], Awaitable[Any]]


def bulk(value: int) -> Job:
    return lambda b: one(b, value, reservation=b.reserve(bulk=True))


def single(value: int) -> Job:
    return lambda b: one(b, value, reservation=b.reserve())


def tiled(values: tuple[int, ...], is_bulk: bool = False) -> Job:
    """One job of several images on one queue place, as a tiled image or a clip's tiled frame."""

    async def run(b: MicroBatcher) -> Any:
        place = b.reserve(bulk=is_bulk)
        try:
            return await b.submit_together(place, [image(v) for v in values], DEFAULT, 5)
        finally:
            place.release()

    return run


def run_order(waves: list[list[Job]]) -> list[int]:
    """The images in the order the worker ran them: the first wave's job holds the only worker (at a gate) while
    each later wave queues behind it, 50 ms apart; then the gate opens. One image per call, single_priority 2."""
    gate = threading.Event()
    det = OrderRecorder(gate)
    b = make(det, micro_batching="never", single_priority=2)

    async def main() -> None:
        tasks: list[asyncio.Future[Any]] = []
        for i, wave in enumerate(waves):
            tasks += [asyncio.ensure_future(job(b)) for job in wave]
            await asyncio.sleep(0.1 if i == 0 else 0.05)
        gate.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    b.close(1)
    return det.order


def test_workers_take_single_images_first_but_bulk_still_advances() -> None:
    order = run_order([[bulk(1)], [bulk(v) for v in range(2, 6)], [single(v) for v in range(100, 104)]])
    # Before: one FIFO, 1 2 3 4 5 100 101 102 103 (the singles behind every bulk image).
    assert order == [1, 100, 101, 2, 102, 103, 3, 4, 5], order


def test_a_tiled_single_image_counts_as_its_tiles_before_bulk_work_goes_next() -> None:
    order = run_order([[bulk(1)], [bulk(2), bulk(3)], [tiled((50, 51, 52))], [single(100), single(101)]])
    # Three tiles are three images' work: a bulk job goes next (counted as one single, the singles would go first).
    assert order == [1, 50, 51, 52, 2, 100, 101, 3], order


def test_a_tiled_bulk_job_counts_as_its_tiles_before_the_next_bulk_job() -> None:
    # A clip's frame in two tiles, then a bulk image, then six singles.
    order = run_order([[bulk(1)], [tiled((2, 3), is_bulk=True)], [bulk(4)], [single(v) for v in range(100, 106)]])
    # Two bulk images just ran: four single images (2 x single_priority) before the next bulk job.
    assert order == [1, 100, 101, 2, 3, 102, 103, 104, 105, 4], order


def test_bulk_work_waits_for_a_single_image_being_decoded_but_not_longer_than_the_hold() -> None:
    open_gate = threading.Event()
    open_gate.set()
    det = OrderRecorder(open_gate)
    b = make(det, micro_batching="never", bulk_hold_ms=300)

    async def main() -> tuple[float, float]:
        single = b.reserve()  # admitted, still "decoding": nothing submitted yet
        started = time.perf_counter()
        bulk = asyncio.ensure_future(one(b, 1, reservation=b.reserve(bulk=True)))
        await asyncio.sleep(0.05)
        assert not bulk.done()  # held back for the single on its way
        await one(b, 100, reservation=single)
        await bulk
        held = time.perf_counter() - started
        # A single that never arrives (its decode failed and it was released late) holds bulk work only so long.
        stuck = b.reserve()
        started = time.perf_counter()
        await one(b, 2, reservation=b.reserve(bulk=True))
        waited = time.perf_counter() - started
        stuck.release()
        return held, waited

    held, waited = asyncio.run(main())
    b.close(1)
    assert det.order == [100, 1, 2], det.order  # before: the bulk image first, the single waiting behind its call
    assert held < 0.3, held
    assert 0.25 < waited < 1.0, waited


# OpenVINO's `hint: auto` (`singles_alone`): a single image runs alone; video frames overlap only while singles are
# quiet.


class IntervalRecorder(FakeDetector):
    """Records each call's (first image value, start, end); singles are valued >= 100, bulk images below."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(echo=True, delay_s=delay_s, info={"slots": 2, "singles_alone": True})
        self.intervals: list[tuple[int, float, float]] = []
        self.threads: dict[int, str] = {}  # first image value -> the model thread that ran the call
        self._lock = threading.Lock()

    def predict_batch(self, images: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = super().predict_batch(images, *args, **kwargs)
        value = int(images[0][0, 0, 0])
        with self._lock:
            self.intervals.append((value, started, time.perf_counter()))
            self.threads[value] = threading.current_thread().name
        return result


def _overlapping(intervals: list[tuple[int, float, float]], value: int) -> list[int]:
    _, start, end = next(i for i in intervals if i[0] == value)
    return [v for v, s, e in intervals if v != value and s < end and start < e]


def test_with_singles_alone_a_single_runs_alone_and_video_frames_overlap_only_while_singles_are_quiet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("api.inference.batching.SINGLES_QUIET_S", 0.5)
    det = IntervalRecorder(delay_s=0.04)
    b = make(det, micro_batching="never", workers=0)
    model = b.slot.current
    assert model is not None
    b.follow(model)  # two model threads, singles alone

    async def bulk(values: range, overlap: bool = True) -> None:
        await asyncio.gather(*(one(b, v, reservation=b.reserve(bulk=True, overlap=overlap)) for v in values))

    async def main() -> tuple[float, float]:
        await bulk(range(0, 8))  # video frames, no single yet: the two threads overlap them
        await bulk(range(40, 48), overlap=False)  # batch items: one call at a time even so
        mixed = asyncio.ensure_future(bulk(range(10, 30)))
        singles_from = time.perf_counter()
        for v in range(100, 106):  # a steady stream of single images while the bulk work goes on
            await one(b, v)
            await asyncio.sleep(0.02)
        singles_until = time.perf_counter()
        await mixed
        return singles_from, singles_until

    singles_from, singles_until = asyncio.run(main())
    b.close(1)
    calls = det.intervals
    assert any(_overlapping(calls, v) for v in range(0, 8)), "quiet singles: video frames should overlap"
    assert not any(_overlapping(calls, v) for v in range(40, 48)), "batch items should not overlap"
    # Singles and batch items always on the first model thread (its infer request), video frames on both.
    assert {det.threads[v] for v in [*range(40, 48), *range(100, 106)]} == {"model-worker-0"}
    assert {det.threads[v] for v in range(0, 8)} == {"model-worker-0", "model-worker-1"}
    for v in range(100, 106):
        assert _overlapping(calls, v) == [], f"single {v} ran beside {_overlapping(calls, v)}"
    # While singles keep coming (and for the quiet time after the last), bulk calls run one at a time.
    busy = [(v, s, e) for v, s, e in calls if singles_from <= s <= singles_until]
    assert all(not _overlapping(busy, v) for v, _, _ in busy), busy
    assert any(v < 100 for v, _, _ in busy)  # bulk work still advanced between the singles


def test_with_singles_alone_a_deep_lane_of_singles_overlaps_but_never_beside_bulk_work() -> None:
    """Two singles at once still run one after the other (the latency model); eight at once leave `DEEP_SINGLES`
    waiting, so they also start on the second thread (the throughput streams), while no video frame starts."""
    det = IntervalRecorder(delay_s=0.04)
    b = make(det, micro_batching="never", workers=0)
    model = b.slot.current
    assert model is not None
    b.follow(model)

    async def main() -> None:
        await asyncio.gather(one(b, 100), one(b, 101))
        frames = [one(b, v, reservation=b.reserve(bulk=True, overlap=True)) for v in range(0, 6)]
        await asyncio.gather(*(one(b, v) for v in range(110, 118)), *frames)

    asyncio.run(main())
    b.close(1)
    calls = det.intervals
    assert _overlapping(calls, 100) == [] and _overlapping(calls, 101) == []
    deep = range(110, 118)
    assert any(_overlapping(calls, v) for v in deep), "a deep lane of singles should overlap"
    assert {det.threads[v] for v in deep} == {"model-worker-0", "model-worker-1"}
    for v in deep:
        assert all(other >= 100 for other in _overlapping(calls, v)), f"single {v} ran beside a video frame"


def test_with_singles_alone_bulk_work_advances_under_a_deep_stream_of_singles() -> None:
    """Six clients keep the single lane deep, so singles overlap on both threads and one is nearly always running;
    bulk work may not start beside a single, so the overlap stops when a bulk job is owed (`single_priority`)."""
    det = IntervalRecorder(delay_s=0.02)
    b = make(det, micro_batching="never", workers=0, single_priority=4)
    model = b.slot.current
    assert model is not None
    b.follow(model)

    async def client(first: int) -> None:
        for v in range(first, first + 15):
            await one(b, v)

    async def main() -> None:
        singles = [asyncio.ensure_future(client(100 + 20 * k)) for k in range(6)]
        await asyncio.sleep(0.05)  # the lane is deep: both threads run singles
        await asyncio.gather(*(one(b, v, reservation=b.reserve(bulk=True)) for v in (1, 2, 3)))
        await asyncio.gather(*singles)

    asyncio.run(main())
    b.close(1)
    calls = det.intervals
    last_bulk = max(e for v, _, e in calls if v < 100)
    after = sum(1 for v, s, _ in calls if v >= 100 and s > last_bulk)
    assert after >= 30, f"the bulk items waited for all but {after} of the 90 singles"  # before: none after them
    assert not any(_overlapping(calls, v) for v in (1, 2, 3))  # never beside a single, as before


def test_without_singles_alone_singles_and_bulk_share_the_threads() -> None:
    """The control: a backend without `singles_alone` (TensorRT's slots) runs a single beside a bulk call."""
    det = IntervalRecorder(delay_s=0.04)
    det.info = {"slots": 2}
    b = make(det, micro_batching="never", workers=0)
    model = b.slot.current
    assert model is not None
    b.follow(model)

    async def main() -> None:
        mixed = asyncio.ensure_future(asyncio.gather(*(one(b, v, reservation=b.reserve(bulk=True)) for v in range(4))))
        await asyncio.sleep(0.01)
        await one(b, 100)
        await mixed

    asyncio.run(main())
    b.close(1)
    assert _overlapping(det.intervals, 100)


def test_a_finished_call_wakes_the_idle_workers_only_when_one_may_start_or_waits_for_it() -> None:
    """At concurrency 1 nothing waits for a call to end: waking the idle model threads then only made them look,
    take the GIL and sleep again while the event loop was being woken for the answer (0.34 -> 0.18 ms from the
    answer to the event loop on the 2-core Intel Xeon VM)."""
    lanes = _Lanes(single_priority=4)
    lanes.singles_alone = True
    wakes: list[int] = []
    notify_all = lanes._ready.notify_all

    def counted() -> None:
        wakes.append(lanes._running)
        notify_all()

    lanes._ready.notify_all = counted  # type: ignore[method-assign]

    def job() -> _Job:
        return _Job([image(1)], DEFAULT, SimpleNamespace(bulk=False, overlap=False))  # type: ignore[arg-type]

    lanes.put(job())
    first = lanes.get(worker=0)
    assert first is not None
    wakes.clear()
    lanes.done(first)  # nothing queued, nothing running: nobody to wake
    assert wakes == []
    lanes.put(job())
    lanes.put(job())
    started = lanes.get(worker=0)
    assert started is not None
    wakes.clear()
    lanes.done(started)  # a single still queued: a worker may start it
    assert wakes == [0]
    # A deep lane: two singles run at once; when one ends, the other still runs (a worker may wait for it to end).
    lanes.put(job())
    lanes.put(job())
    one_call, other_call = lanes.get(worker=0), lanes.get(worker=1)
    assert one_call is not None and other_call is not None
    assert lanes.get_nowait() is not None  # the lane emptied (a companion joins a call already counted)
    wakes.clear()
    lanes.done(one_call)
    assert wakes == [1]
