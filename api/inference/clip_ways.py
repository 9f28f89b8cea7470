"""Which way a clip's frames go to the model, chosen by timing (`detector.runtime.fastest.FastestOf`), for
`POST /predict/video` (api/inference/pipeline.py `FrameStream`), as `detector predict clip.mp4` chooses for its loop
(detector/runtime/video_detect.py).

Two ways where the model has throughput streams (OpenVINO, `hint: auto`): up to `max_batch` frames in inference at
once, on the streams beside each other; or one frame at a time on the model's one-thread twin
(`Detector.one_thread`), run on the model thread that takes it, which leaves the other cores to the clip's decoding.
The twin is loaded (once per model, kept with it) in the background after `LOAD_AFTER_FRAMES` frames, so a short
clip never pays for it, and it joins the timing once it is warm. Measured on the 2-core Intel AMX VM with a 720p
H.264 clip at `vid_stride` 3 and the 256 px INT8 model: the service with every model on one thread answered 141-147
frames/s against 126-136 on the streams (2026-12-06); what `FastestOf` makes of it is in docs/performance.md.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

from api.model.slot import ModelSlot
from detector.runtime.fastest import FastestOf

log = logging.getLogger("api.inference.clip_ways")

# Frames answered before the twin is loaded: a clip this short gains nothing from timing two ways.
LOAD_AFTER_FRAMES = 32


@dataclass(frozen=True)
class Way:
    """Up to `window` frames of a clip in inference at once, on the model's one-thread twin or not."""

    window: int
    one_thread: bool


class ClipWays:
    """The way a clip's next frame goes (`current`), told each frame answered (`answered`). Event-loop only."""

    def __init__(self, slot: ModelSlot, window: int, size: tuple[int, int], timed: bool) -> None:
        """`window`: frames at once on the streams; `size`: the clip's (width, height), which the twin is warmed
        for; `timed`: False keeps one way (tiles: a frame's tiles are split over the streams already)."""
        self._slot = slot
        self._size = size
        # A switch away from the streams leaves up to `window` of their frames to answer first: that many settle.
        self._fastest = FastestOf(Way(max(1, window), False), settle=max(2, window), passes=3)
        self._answered = 0
        self._timed = timed
        self._closed = False

    @property
    def current(self) -> Way:
        return self._fastest.current

    def answered(self) -> None:
        """A frame's answer is out."""
        self._fastest.done()
        self._answered += 1
        if self._answered == LOAD_AFTER_FRAMES and self._timed:
            self._load()

    def close(self) -> None:
        self._closed = True

    def _load(self) -> None:
        model = self._slot.current
        if model is None or int(model.info.get("slots") or 1) <= 1:
            return
        loop = asyncio.get_running_loop()
        loading = loop.run_in_executor(None, partial(model.one_thread, load=True, warm_for=self._size))
        loading.add_done_callback(self._loaded)

    def _loaded(self, loading: asyncio.Future[Any]) -> None:
        if loading.cancelled():
            return
        if loading.exception() is not None:
            log.warning(
                "the one-thread model could not be loaded; clips keep running on the streams",
                exc_info=loading.exception(),
            )
            return
        if loading.result() is not None and not self._closed:
            self._fastest.add(Way(1, True))
