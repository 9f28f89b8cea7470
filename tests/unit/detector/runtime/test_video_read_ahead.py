"""`read_ahead`: frames produced on a thread of their own, in order, errors in order, and a consumer that leaves
early stops the reader and closes the source (no thread or capture left behind). `read_frames` without the frames
between strides: the same processed frames."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from detector.runtime.video import SKIPPED, read_ahead, read_frames


def test_items_come_in_order_and_the_reader_runs_ahead() -> None:
    produced: list[int] = []

    def source() -> Iterator[int]:
        for i in range(20):
            produced.append(i)
            yield i

    items = read_ahead(source(), depth=4)
    assert next(items) == 0
    time.sleep(0.2)  # the consumer is busy with item 0: the reader fills its buffer meanwhile
    assert len(produced) >= 4
    assert [0, *items] == list(range(20))


def test_an_error_of_the_source_reaches_the_consumer_after_the_items_before_it() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("frame 3 is broken")

    seen: list[int] = []
    with pytest.raises(ValueError, match="frame 3 is broken"):
        for item in read_ahead(source()):
            seen.append(item)
    assert seen == [1, 2]


def test_leaving_early_stops_the_reader_and_closes_the_source() -> None:
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            i = 0
            while True:  # an endless clip
                yield i
                i += 1
        finally:
            closed.set()

    before = threading.active_count()
    for item in read_ahead(source(), depth=2):
        if item == 5:
            break
    assert closed.wait(5), "the source was not closed"
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before


def test_frames_between_strides_are_only_grabbed_when_not_kept(tmp_path: Path) -> None:
    import cv2

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (64, 48))
    for i in range(10):
        writer.write(np.full((48, 64, 3), i * 20, np.uint8))
    writer.release()
    kept = list(read_frames(path, vid_stride=3))
    grabbed = list(read_frames(path, vid_stride=3, keep_skipped=False))
    assert (
        [(i, run) for i, _, run, _ in grabbed]
        == [(i, run) for i, _, run, _ in kept]
        == [(i, i % 3 == 0) for i in range(10)]
    )
    for (_, want, run, _), (_, got, _, _) in zip(kept, grabbed, strict=True):
        if run:
            assert np.array_equal(got, want)  # the processed frames are the same pixels
        else:
            assert got is SKIPPED and want.shape == (48, 64, 3)
