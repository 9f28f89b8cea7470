"""A clip's frames in the service (`api.inference.pipeline.FrameStream`): the next frame is read (decoded) while the
lines before it are being answered, its pixels held in the budget from before its read, and every hold comes back
at the end, after a disconnect too. A stand-in pipeline: real pixel budget and thread pool, no model."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from api.admission.pixel_budget import PixelBudget
from api.errors import UnprocessableError
from api.inference.pipeline import FrameStream
from detector.runtime.video import DAMAGED, SKIPPED, Frame

SIZE = (64, 48)  # the clip's (width, height)
NO_OPTIONS: Any = SimpleNamespace(tiling=None)  # the stand-in pipeline's _frame ignores them
FRAMES = 6


def _pipeline(pool: ThreadPoolExecutor, budget: PixelBudget, max_video_frames: int = 100) -> Any:
    async def frame(pixels: np.ndarray, size: tuple[int, int], options: Any, one_thread: bool = False) -> str:
        return f"prediction {int(pixels[0, 0, 0])}"

    server = SimpleNamespace(max_batch=1, max_video_frames=max_video_frames, decode_wait_s=1.0)
    decoder = SimpleNamespace(pixels=budget, bulk_pool=pool)
    return SimpleNamespace(decoder=decoder, server=server, _frame=frame, slot=SimpleNamespace(current=None))


def _reader(started: list[threading.Event]) -> Iterator[Frame]:
    for index in range(FRAMES):
        started[index].set()
        yield Frame(index, np.full((SIZE[1], SIZE[0], 3), index, np.uint8), True, index / 10)


def test_the_next_frame_is_read_while_a_line_is_answered() -> None:
    started = [threading.Event() for _ in range(FRAMES)]
    budget = PixelBudget(capacity=10 * SIZE[0] * SIZE[1])
    overlapped: list[bool] = []
    got: list[tuple[int, Any]] = []

    async def consume() -> None:
        stream = FrameStream(_pipeline(pool, budget), _reader(started), SIZE, options=NO_OPTIONS)
        try:
            async for index, time_s, prediction in stream:
                got.append((index, prediction))
                assert time_s == index / 10
                if index + 1 < FRAMES:
                    # While this frame's line is being answered (tracked, sent), the reader is on the next frame:
                    # one read waiting for each line made the service slower than the CLI on long clips.
                    overlapped.append(await asyncio.to_thread(started[index + 1].wait, 2.0))
                # Each frame read and not yet handed out holds its pixels; the line out gives them back.
                assert budget.held <= 2 * SIZE[0] * SIZE[1]
        finally:
            stream.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        asyncio.run(consume())
    assert got == [(i, f"prediction {i}") for i in range(FRAMES)]
    assert overlapped == [True] * (FRAMES - 1)
    assert budget.held == 0


def test_a_disconnect_gives_every_hold_back_and_closes_the_reader_after_its_read() -> None:
    release, closed = threading.Event(), threading.Event()
    budget = PixelBudget(capacity=10 * SIZE[0] * SIZE[1])

    def reader() -> Iterator[Frame]:
        try:
            yield Frame(0, np.zeros((SIZE[1], SIZE[0], 3), np.uint8), True, 0.0)
            release.wait(5.0)  # the read ahead of frame 1 is still running when the client goes
            yield Frame(1, np.ones((SIZE[1], SIZE[0], 3), np.uint8), True, 0.1)
        finally:
            closed.set()

    async def consume_one() -> None:
        stream = FrameStream(_pipeline(pool, budget), reader(), SIZE, options=NO_OPTIONS)
        iterator: Any = stream.__aiter__()
        assert (await iterator.__anext__())[0] == 0
        assert budget.held == SIZE[0] * SIZE[1]  # frame 1, being read, holds its pixels
        stream.close()
        await iterator.aclose()
        assert budget.held == 0
        assert not closed.is_set()  # a read in flight cannot be interrupted: the reader closes after it
        release.set()
        assert await asyncio.to_thread(closed.wait, 5.0)

    with ThreadPoolExecutor(max_workers=1) as pool:
        asyncio.run(consume_one())
    assert budget.held == 0


def test_a_damaged_packet_comes_in_its_place_and_holds_nothing_after_its_line() -> None:
    budget = PixelBudget(capacity=10 * SIZE[0] * SIZE[1])

    def reader() -> Iterator[Frame]:
        for index in range(4):
            pixels = DAMAGED if index == 1 else np.full((SIZE[1], SIZE[0], 3), index, np.uint8)
            yield Frame(index, pixels, pixels is not DAMAGED, index / 10)

    async def consume() -> list[tuple[int, float, Any]]:
        stream = FrameStream(_pipeline(pool, budget), reader(), SIZE, options=NO_OPTIONS)
        try:
            return [item async for item in stream]
        finally:
            stream.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        got = asyncio.run(consume())
    assert got == [(0, 0.0, "prediction 0"), (1, 0.1, None), (2, 0.2, "prediction 2"), (3, 0.3, "prediction 3")]
    assert budget.held == 0


class _CountingPool(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.calls = 0

    def submit(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.calls += 1
        return super().submit(*args, **kwargs)


def _strided(read: list[int], frames: int, stride: int) -> Iterator[Frame]:
    """What `read_frames(..., vid_stride, keep_skipped=False)` yields: every frame, the skipped ones empty."""
    for index in range(frames):
        read.append(index)
        run = index % stride == 0
        pixels = np.full((SIZE[1], SIZE[0], 3), index, np.uint8) if run else SKIPPED
        yield Frame(index, pixels, run, index / 10)


def test_the_frames_vid_stride_skips_come_in_the_read_of_the_next_frame_to_answer() -> None:
    # One pool call per answered frame (and one that finds the end), not one per frame of the clip: each call is an
    # event-loop round trip, and at vid_stride 3 those were about 13 % of a clip's GIL time in the server.
    budget, read = PixelBudget(capacity=10 * SIZE[0] * SIZE[1]), []

    async def consume() -> list[tuple[int, float, Any]]:
        stream = FrameStream(_pipeline(pool, budget), _strided(read, 10, 3), SIZE, options=NO_OPTIONS)
        try:
            return [item async for item in stream]
        finally:
            stream.close()

    with _CountingPool() as pool:
        got = asyncio.run(consume())
    assert got == [(i, i / 10, f"prediction {i}") for i in (0, 3, 6, 9)]
    assert pool.calls == 5
    assert read == list(range(10))
    assert budget.held == 0


@pytest.mark.parametrize(
    ("frames", "limit", "answered"), [(10, 10, [0, 3, 6, 9]), (10, 9, [0, 3, 6]), (10, 7, [0, 3, 6]), (10, 6, [0, 3])]
)
def test_max_video_frames_counts_skipped_frames_and_reads_one_past_it_at_most(
    frames: int, limit: int, answered: list[int]
) -> None:
    budget, read = PixelBudget(capacity=10 * SIZE[0] * SIZE[1]), []
    got: list[int] = []

    async def consume() -> None:
        stream = FrameStream(_pipeline(pool, budget, limit), _strided(read, frames, 3), SIZE, options=NO_OPTIONS)
        try:
            async for index, _, _ in stream:
                got.append(index)
        finally:
            stream.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        if limit >= frames:
            asyncio.run(consume())
        else:
            with pytest.raises(UnprocessableError, match=f"more than {limit} frames"):
                asyncio.run(consume())
    assert got == answered
    assert read == list(range(min(frames, limit + 1)))
    assert budget.held == 0


def test_a_large_vid_stride_reads_at_most_read_at_most_frames_a_call() -> None:
    # A read in flight cannot be interrupted: at vid_stride 100 one read per answered frame would go on decoding up
    # to 99 frames after a client has gone. Reads stop at READ_AT_MOST (32) items: 0 | 1-32 33-64 65-96 97-100 | ...
    # | 201-232 233-249 end.
    budget, read = PixelBudget(capacity=10 * SIZE[0] * SIZE[1]), []

    async def consume() -> list[int]:
        stream = FrameStream(_pipeline(pool, budget, 1000), _strided(read, 250, 100), SIZE, options=NO_OPTIONS)
        try:
            return [index async for index, _, _ in stream]
        finally:
            stream.close()

    with _CountingPool() as pool:
        got = asyncio.run(consume())
    assert got == [0, 100, 200]
    assert pool.calls == 11
    assert read == list(range(250))
    assert budget.held == 0
