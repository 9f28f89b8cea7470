"""A pixel budget shared by every request: decoded images, not request counts, bound the memory of decoding.

A request states how many pixels its decode will produce (read from the image header, so a 1 KB file declaring
6000x6000 costs its 36 million pixels here before anything is allocated) and holds them until its answer is
built, since its decoded array lives that long. Requests that do not fit wait, in arrival order (a big image is
not starved by a stream of small ones), up to `wait_s`; then 503 + Retry-After. Many small camera frames decode
side by side; two 40-megapixel uploads take turns.

Hand-written rather than an asyncio.Semaphore because the weights differ per request and the waiters must be
served first-come-first-served (a semaphore acquired N times would interleave). Event loop only.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from api.errors import ServiceUnavailableError
from api.monitoring.metrics import Metrics


class PixelBudget:
    def __init__(self, capacity: int, metrics: Metrics | None = None) -> None:
        self.capacity = capacity
        self.held = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self.metrics = metrics
        if metrics is not None:
            metrics.pixels_held.set_function(lambda: float(self.held))

    def _clamp(self, pixels: int) -> int:
        return max(1, min(pixels, self.capacity))  # config guarantees capacity >= max_pixels; never deadlock

    @asynccontextmanager
    async def hold(self, pixels: int, wait_s: float) -> AsyncIterator[None]:
        pixels = self._clamp(pixels)
        await self._acquire(pixels, wait_s)
        try:
            yield
        finally:
            self._release(pixels)

    async def acquire(self, pixels: int, wait_s: float) -> int:
        """Take `pixels` (waiting in line up to `wait_s`, then 503), returning the amount to `give_back` later:
        for holds that outlive one `with` block (video frames in flight)."""
        pixels = self._clamp(pixels)
        await self._acquire(pixels, wait_s)
        return pixels

    def try_take(self, pixels: int) -> int:
        """Take `pixels` now if nobody waits and they fit (the pixels taken), else take nothing (0). The caller
        gives them back with `give_back`, or part of them earlier with `shrink`."""
        pixels = self._clamp(pixels)
        if self._waiters or self.held + pixels > self.capacity:
            return 0
        self.held += pixels
        return pixels

    def shrink(self, taken: int, needed: int) -> int:
        """Keep `needed` of the `taken` pixels, giving the rest back now (waiters may fit); returns what is kept."""
        needed = min(taken, self._clamp(needed))
        if needed < taken:
            self._release(taken - needed)
        return needed

    def give_back(self, pixels: int) -> None:
        self._release(pixels)

    async def _acquire(self, pixels: int, wait_s: float) -> None:
        if not self._waiters and self.held + pixels <= self.capacity:
            self.held += pixels
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (pixels, future)
        self._waiters.append(entry)
        try:
            done, _ = await asyncio.wait({future}, timeout=wait_s)
        except BaseException:  # cancelled (the client went away): give back what may have been granted
            self._abandon(entry)
            raise
        if not done:
            self._abandon(entry)
            if self.metrics is not None:
                self.metrics.rejected.labels(reason="pixel_budget").inc()
            raise ServiceUnavailableError(
                f"server is busy decoding other images ({self.held} of {self.capacity} pixels in use; this image "
                f"needs {pixels}); retry after the delay in the Retry-After header",
                2,
            )

    def _abandon(self, entry: tuple[int, asyncio.Future[None]]) -> None:
        pixels, future = entry
        if future.done() and not future.cancelled():
            self._release(pixels)  # granted just as we gave up
            return
        future.cancel()
        if entry in self._waiters:
            self._waiters.remove(entry)
        self._wake()  # the head may have been the one that did not fit

    def _release(self, pixels: int) -> None:
        self.held -= pixels
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.held + self._waiters[0][0] <= self.capacity:
            pixels, future = self._waiters.popleft()
            if future.cancelled():
                continue
            self.held += pixels
            future.set_result(None)
