"""Decoding inside the shared pixel budget, off the event loop.

Every decoded array is counted in the budget (api/admission/pixel_budget.py) from before it is allocated until the
`with` block that holds it ends, so the memory of decoding is bounded by pixels, not by request counts. Decoding
is CPU work that releases the GIL in PIL's and simplejpeg's C code: it runs in a pool of its own (never on the
event loop, nor in the default pool Starlette uses for file I/O), and batch images and video frames use a second,
smaller pool, so 64 queued batch decodes never sit in front of a single `/predict`'s decode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from api.admission.pixel_budget import PixelBudget
from api.errors import GatewayTimeoutError
from api.monitoring.metrics import Metrics
from detector.config import ServerConfig
from detector.runtime.images import DecodedImage, decode_image_scaled, probe_image

log = logging.getLogger("api")

T = TypeVar("T")
BULK_NICENESS = 10  # batch and video decodes yield the CPU to single images and inference (Linux nice, 0-19)


class _DecodeTimedOut(Exception):
    """A decode passed `decode_timeout_s` (its pixels are given back when its thread ends)."""


class Decoder:
    def __init__(self, server: ServerConfig, pixels: PixelBudget, metrics: Metrics) -> None:
        self.server = server
        self.pixels = pixels
        self.metrics = metrics
        workers = min(8, os.cpu_count() or 2)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
        self.bulk_pool = ThreadPoolExecutor(
            max_workers=max(1, workers // 2), thread_name_prefix="decode-bulk", initializer=_lower_priority
        )

    @asynccontextmanager
    async def image(
        self, data: bytes, model_input: tuple[int, int] | None, bulk: bool = False
    ) -> AsyncIterator[DecodedImage]:
        """`data` decoded within the budget; the pixels stay counted until the `with` block ends. `model_input`:
        the size big JPEGs may be decoded down to (DCT scaling), None for every pixel. 4xx for bad images, 503 +
        Retry-After when the budget stays full, 504 past `decode_timeout_s`."""
        server = self.server
        loop = asyncio.get_running_loop()
        pool = self.bulk_pool if bulk else self.pool
        # Fast path: while the budget has room for the largest image allowed (`max_pixels`, which the decoder
        # enforces from the header before allocating) and nobody waits, take that much and decode at once, then
        # keep only what the image needed. One trip to the decode pool instead of two (probe, then decode): about
        # 0.4 ms of a request at concurrency 1 (measured through Server-Timing stages; see docs/performance.md).
        taken = self.pixels.try_take(server.max_pixels)
        if not taken:
            # Busy: count this image's pixels from its header first, then wait in line for them (first come, first
            # served).
            probe = await loop.run_in_executor(pool, probe_image, data, server.max_pixels, model_input)
            taken = await self.pixels.acquire(probe.decoded_pixels, server.decode_wait_s)
        try:
            future = loop.run_in_executor(pool, decode_image_scaled, data, server.max_pixels, model_input)
            image = await self._finish(future, taken)
            taken = self.pixels.shrink(taken, image.pixels.shape[0] * image.pixels.shape[1])
            yield image
        except _DecodeTimedOut:
            taken = 0  # given back when the decode ends
            raise self._timeout() from None
        finally:
            self.pixels.give_back(taken)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """CPU work on a decoded image (drawing, JPEG encoding) in the decode pool, never on the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, function, *args)

    async def _finish(self, future: asyncio.Future[DecodedImage], pixels: int) -> DecodedImage:
        """The decode's result within `decode_timeout_s`; else _DecodeTimedOut. A thread cannot be stopped: the
        decode runs on, and its `pixels` go back to the budget when it ends (the scan limit and `max_pixels` bound
        how long that is)."""
        done, _ = await asyncio.wait({future}, timeout=self.server.decode_timeout_s)
        if not done:
            future.add_done_callback(lambda _: self.pixels.give_back(pixels))
            raise _DecodeTimedOut
        return future.result()

    def _timeout(self) -> GatewayTimeoutError:
        timeout = self.server.decode_timeout_s
        self.metrics.rejected.labels(reason="decode_timeout").inc()
        log.warning("an image took more than %g s to decode (decode_timeout_s): answered 504", timeout)
        return GatewayTimeoutError(
            f"decoding the image took longer than {timeout:g} s (inference.server.decode_timeout_s); "
            "send a smaller or simpler image"
        )

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.bulk_pool.shutdown(wait=True, cancel_futures=True)


def _lower_priority() -> None:
    """Run this thread (a bulk decoder) at a lower CPU priority, so on a busy machine single images' decodes and
    the model's threads get the cores first. Raising one's own niceness needs no privilege; Linux applies it per
    thread. Elsewhere, or if refused, the thread keeps the normal priority."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BULK_NICENESS)
