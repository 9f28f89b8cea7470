"""When `detect_video` times a second way for a clip's frames (`_Ways`): a CPU backend with several slots, no tiles,
and at least `PACE_FROM_FRAMES` frames to detect (an unknown count counts as enough); the one-thread detector is
loaded in the background, warmed for the clip's size, and joins once loaded; a failed load leaves the first way."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from detector.runtime import video_detect
from detector.runtime.tiling import Tiling
from detector.runtime.video import VideoInfo


class FakeDetector:
    def __init__(self, slots: int = 2, device: str = "cpu", fails: bool = False) -> None:
        self.backend = SimpleNamespace(slots=slots, device_name=device)
        self.asked: list[tuple[int, int] | None] = []
        self.fails = fails

    def one_thread(self, load: bool = True, warm_for: tuple[int, int] | None = None) -> Any:
        self.asked.append(warm_for)
        if self.fails:
            raise RuntimeError("no memory for a second model")
        return SimpleNamespace(name="twin")


def _ways(det: FakeDetector, frames: int, stride: int = 1, tiles: Tiling | None = None) -> video_detect._Ways:
    info = VideoInfo(fps=30.0, frames=frames, width=1280, height=720)
    return video_detect._Ways(det, lambda f: [], info, stride, tiles, lambda twin: lambda f: [twin])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("slots", "device", "frames", "stride", "tiled", "timed"),
    [
        (2, "cpu", 300, 1, False, True),
        (2, "cpu", 0, 1, False, True),  # a count the container does not give
        (2, "cpu", 900, 3, False, True),
        (2, "cpu", 900, 4, False, False),  # 225 frames to detect
        (2, "cpu", 255, 1, False, False),
        (1, "cpu", 900, 1, False, False),  # one slot: no streams, nothing to time against
        (2, "cuda:0", 900, 1, False, False),  # a GPU batches frames instead
        (2, "cpu", 900, 1, True, False),  # tiles: each frame's tiles are split over the streams already
    ],
)
def test_a_second_way_is_loaded_only_where_it_can_pay(
    slots: int, device: str, frames: int, stride: int, tiled: bool, timed: bool
) -> None:
    det = FakeDetector(slots, device)
    ways = _ways(det, frames, stride, Tiling(64, 64, 0.2) if tiled else None)
    try:
        ways.close()  # waits for a load under way
        assert det.asked == ([(1280, 720)] if timed else [])
        first = ways.current()
        assert (first.in_flight, first.pool is not None) == (
            (slots, True) if slots > 1 and device == "cpu" else (1, False)
        )
        assert ways._fastest.ways == (2 if timed else 1)
    finally:
        ways.close()


def test_a_load_that_fails_leaves_the_clip_on_its_way(caplog: pytest.LogCaptureFixture) -> None:
    det = FakeDetector(fails=True)
    ways = _ways(det, 900)
    ways.close()
    first = ways.current()
    assert first.in_flight == 2 and ways._fastest.ways == 1
    assert "could not be loaded" in caplog.text
