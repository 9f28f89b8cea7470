"""Everything one running app holds: configuration, the model slot, the micro-batcher, the decode pool, status.

Created in the app's lifespan (so nothing loads at import) and reached from routes through `api.deps`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from api.batching import MicroBatcher
from api.decode_budget import PixelBudget
from api.drift import DriftMonitor
from api.errors import ConflictError, GatewayTimeoutError, ServiceUnavailableError
from api.inbox import Inbox
from api.metrics import Metrics
from api.model_files import checked_model_path, model_dir
from api.model_slot import DetectorLike, LoadedModel, ModelSlot
from api.shadow import Shadow
from api.tracing import StageSpans
from api.uploads import JobGate, UploadGate
from detector.config import Config
from detector.errors import DetectorError, ModelLoadError
from detector.runtime import Detections
from detector.runtime.backends.base import BackendOptions
from detector.runtime.engines import EngineBuilder
from detector.runtime.golden import GoldenImage, golden_from_metadata, golden_problem
from detector.runtime.images import DecodedImage, decode_image_scaled, probe_image
from detector.runtime.model_source import is_registry_uri

log = logging.getLogger("api")


class _DecodeTimedOut(Exception):
    """A decode passed `decode_timeout_s` (its pixels are given back when its thread ends)."""


# (model_path, backend) -> a loaded, not yet warmed-up detector. Tests pass their own (e.g. a slowed-down one).
DetectorFactory = Callable[[str, str], DetectorLike]
Status = Literal["loading", "ok", "failed", "shutting_down"]


def default_detector_factory(config: Config, engine_builder: EngineBuilder | None = None) -> DetectorFactory:
    """`Detector.load` with the thresholds and backend options of `config`. `engine_builder` (injected by the CLI)
    lets the TensorRT backend build a missing engine; without it only cached engines load."""

    def load(model_path: str, backend: str) -> DetectorLike:
        from detector.runtime import Detector  # the backends' libraries load only here

        inf = config.inference
        return Detector.load(
            model_path,
            backend=backend,
            options=BackendOptions.from_config(config, engine_builder),  # the same options as `detector predict`
            conf=inf.conf,
            iou=inf.iou,
            max_det=inf.max_det,
            rect=inf.rect,
            class_thresholds=inf.class_thresholds,
        )

    return load


class Service:
    def __init__(
        self,
        config: Config,
        factory: DetectorFactory,
        metrics: Metrics,
        on_fatal: Callable[[str], None] | None = None,
        shadow_factory: DetectorFactory | None = None,
        spans: StageSpans | None = None,
    ) -> None:
        server = config.inference.server
        self.config = config
        self.factory = factory
        self.metrics = metrics
        # Called once when the served backend breaks beyond repair (api.server: stop uvicorn, exit non-zero).
        self.on_fatal = on_fatal
        self.status: Status = "loading"
        self.error = ""  # why the initial load failed, for /health
        self.slot = ModelSlot()
        self.batcher = MicroBatcher(
            self.slot,
            max_batch=server.max_batch,
            micro_batching=server.micro_batching,
            max_wait_ms=server.max_wait_ms,
            queue_size=server.queue_size,
            workers=server.workers,
            metrics=metrics,
            on_failure=self._backend_failed,
            bulk_queue_share=server.bulk_queue_share,
            single_priority=server.single_priority,
        )
        # The challenger (inference.shadow), scored off the request path; it lives beside the slot, so reloads of
        # the served model keep it. Shed while any request waits for the served model.
        self.shadow = Shadow(
            config.inference.shadow,
            config.inference.backend,
            shadow_factory,
            metrics,
            served_busy=lambda: self.batcher.depth > 0,
            served_names=self._served_names,
        )
        self.uploads = UploadGate(server.max_uploads, metrics)
        self.video_jobs = JobGate(server.max_video_jobs, "video", metrics)
        self.pixels = PixelBudget(server.decode_pixel_budget, metrics)
        drift = config.inference.drift
        self.drift = DriftMonitor(metrics, drift.window, drift.min_images, drift.enabled)
        self.inbox = Inbox(config.inference.inbox, metrics)  # off by default; started with the app
        self.spans = spans or StageSpans(None)  # inference.tracing: the stages of each prediction as spans
        # Decoding is CPU work that releases the GIL in PIL's C code: its own pool keeps it off the event loop and
        # away from the default pool that Starlette uses for file I/O. Its memory is bounded by `self.pixels`.
        self.decode_pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2), thread_name_prefix="decode")
        # Batch images and video frames decode in their own, smaller pool: 64 queued batch decodes must not sit in
        # front of a single /predict's decode (fair sharing, api/batching.py).
        self.bulk_decode_pool = ThreadPoolExecutor(
            max_workers=max(1, min(8, os.cpu_count() or 2) // 2), thread_name_prefix="decode-bulk"
        )
        # One model load at a time, initial or reload: otherwise a slow initial load could finish after a reload
        # and replace the newer model, or mark the service "failed" while a model serves.
        self._load_lock = threading.Lock()
        self._state_lock = threading.Lock()  # status and slot change together
        self._golden_failed: LoadedModel | None = None  # the model whose golden check failed (watch_golden)

    def _served_names(self) -> dict[str, str] | None:
        model = self.slot.current
        return None if model is None else {str(k): str(v) for k, v in model.info.get("names", {}).items()}

    @property
    def ready(self) -> bool:
        return self.status == "ok" and self.slot.current is not None

    @property
    def max_image_bytes(self) -> int:
        return int(self.config.inference.server.max_upload_mb * 1024 * 1024)

    # -- loading ------------------------------------------------------------------------------------------------

    def _load(self, model_path: str, backend: str) -> LoadedModel:
        """Load and warm up; any failure becomes a ModelLoadError-style DetectorError with the loader's message."""
        started = time.perf_counter()
        try:
            detector = self.factory(model_path, backend)
        except DetectorError:
            raise
        except Exception as exc:  # a loader bug or a library error type we do not know: still the caller's answer
            log.exception("loading %s on %s failed", model_path, backend)
            raise ModelLoadError(f"cannot load {model_path} on {backend}: {type(exc).__name__}: {exc}") from exc
        try:
            detector.warmup()
            model = LoadedModel(detector, source=model_path)
        except Exception as exc:
            detector.close()
            raise ModelLoadError(f"{model_path} loaded but failed its warm-up run: {exc}") from exc
        golden = self._golden(detector)
        if golden:  # not yet shared with any worker: asked directly
            answers = [detector.predict_batch([g.pixels()], **g.thresholds)[0] for g in golden]
            problem = self._golden_verdict(detector, golden, answers)
            if problem is not None:
                detector.close()
                raise ModelLoadError(f"{Path(model_path).name} does not see what it saw at export: {problem}")
        log.info(
            "model %s (version %s) ready on %s in %.2f s",
            model_path,
            model.info.get("version"),
            model.info.get("backend"),
            time.perf_counter() - started,
        )
        return model

    # -- golden images: "does it still see" ------------------------------------------------------------------

    def _golden(self, detector: DetectorLike) -> list[GoldenImage]:
        """The model's golden images (export.profile.golden_images), or [] when it has none or the check is off."""
        if not self.config.inference.golden.enabled:
            return []
        entries = getattr(getattr(detector, "metadata", None), "golden", None) or []  # test doubles have none
        try:
            return golden_from_metadata(entries)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("the model's golden images are unreadable, not checked: %s", exc)
            return []

    def _golden_verdict(
        self, detector: DetectorLike, golden: list[GoldenImage], answers: list[Detections]
    ) -> str | None:
        settings = self.config.inference.golden
        names = {int(k): str(v) for k, v in detector.describe().get("names", {}).items()}
        return golden_problem(golden, answers, names, settings.iou, settings.min_match_rate)

    async def watch_golden(self) -> None:
        """Every `inference.golden.period_s`, ask the served model its golden images through the micro-batcher
        (like any request, so it never runs beside a worker on the same backend). A wrong answer: /health 503
        with the reason and the model is loaded again from its file (the load checks them too); until that
        succeeds, each period tries again. Runs until cancelled."""
        settings = self.config.inference.golden
        if not settings.enabled or settings.period_s <= 0:
            return
        while self.status != "shutting_down":
            await asyncio.sleep(settings.period_s)
            model = self.slot.current
            if model is None:
                continue
            if self.status == "ok":
                problem = await self._golden_served(model)
                if problem is None:
                    continue
                with self._state_lock:
                    if self.slot.current is not model or self.status != "ok":
                        continue
                    self.status = "failed"
                    self.error = f"the model no longer sees what it saw at export ({problem}); reloading it"
                    self._golden_failed = model
                self.metrics.golden_failures.inc()
                log.error("%s", self.error)
            if self.status == "failed" and self._golden_failed is model:
                await asyncio.to_thread(self._reload_after_golden, model)

    async def _golden_served(self, model: LoadedModel) -> str | None:
        golden = self._golden(model.detector)
        if not golden:
            return None
        timeout = self.config.inference.server.request_timeout_s
        answers = []
        for image in golden:
            th = image.thresholds
            key = (th.get("conf"), th.get("iou", 0.7), th.get("max_det", 300), ())
            try:
                reservation = self.batcher.reserve()
            except ServiceUnavailableError:
                return None  # busy: the check waits for the next period rather than take a client's place
            try:
                outcome = await self.batcher.submit(reservation, image.pixels(), key, timeout)
            except Exception as exc:  # the backend itself failing is its own path (_backend_failed)
                log.warning("golden check skipped: %s", exc)
                return None
            finally:
                reservation.release()
            if outcome.model.get("version") != model.info.get("version"):
                return None  # a reload swapped the model meanwhile
            answers.append(outcome.detections)
        return self._golden_verdict(model.detector, golden, answers)

    def _reload_after_golden(self, model: LoadedModel) -> None:
        if not self._load_lock.acquire(blocking=False):
            return  # an admin reload is under way; it checks the golden images itself
        try:
            try:
                fresh = self._load(model.source, self.config.inference.backend)
            except Exception as exc:
                self.metrics.reloads.labels(outcome="failed").inc()
                with self._state_lock:
                    if self._golden_failed is model:
                        self.error = f"{self.error.split('; reloading')[0]}; the reload failed too: {exc}"
                log.error("reloading after the golden check failed did not help: %s", exc)
                return
            self._install(fresh)
            self.metrics.reloads.labels(outcome="ok").inc()
            log.info("the model was reloaded after its golden check failed; it passes them again")
        finally:
            self._load_lock.release()

    def load_initial(self) -> None:
        """Blocking; run in a thread from the lifespan so /health answers "loading" meanwhile."""
        inf = self.config.inference
        with self._load_lock:
            try:
                model = self._load(inf.model_path, inf.backend)
            except Exception as exc:
                with self._state_lock:
                    if self.status == "loading":
                        self.status, self.error = "failed", str(exc)
                log.error("the model could not be loaded; /health reports 503 until a reload succeeds: %s", exc)
                return
            self._install(model)

    def reload(self, model_path: str, backend: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """Blocking. Load + warm up the new model while the old one serves, then swap; returns (old, new) info.

        `model_path` is a registry URI (resolved by the injected resolver into the registry cache) or a file inside
        the model directory (see api/model_files.py), checked before anything is read.
        """
        server, inf = self.config.inference.server, self.config.inference
        if is_registry_uri(model_path):
            path: str | Path = model_path
        else:
            directory = model_dir(server.model_dir, inf.model_path, inf.registry_cache_dir)
            path = checked_model_path(model_path, directory, int(server.max_model_mb * 1024 * 1024))
        if not self._load_lock.acquire(blocking=False):
            raise ConflictError("a model load or reload is already in progress; wait for it to finish")
        try:
            try:
                model = self._load(str(path), backend)
            except Exception:
                self.metrics.reloads.labels(outcome="failed").inc()
                raise
            old = self._install(model)
            if old is None and self.status != "ok":
                raise ServiceUnavailableError("the server is shutting down; the reloaded model was not installed")
            self.metrics.reloads.labels(outcome="ok").inc()
            return (old.info if old else None), model.info
        finally:
            self._load_lock.release()

    def _install(self, model: LoadedModel) -> LoadedModel | None:
        """Serve `model` and mark the service ready, together; during shutdown the model is closed instead."""
        with self._state_lock:
            if self.status == "shutting_down":
                model.retire()
                return None
            old = self.slot.swap(model)
            self.status, self.error = "ok", ""
            self._golden_failed = None
        self.batcher.follow(model)
        self.metrics.set_model(str(model.info.get("version")), str(model.info.get("backend")))
        metadata = getattr(model.detector, "metadata", None)  # test doubles may have none
        self.drift.set_reference(getattr(metadata, "reference_profile", None), str(model.info.get("version")))
        return old

    def _backend_failed(self, model: LoadedModel, exc: Exception) -> None:
        """The served backend broke at inference (`BackendFailedError`, e.g. a CUDA illegal-address fault).

        Why exit rather than reload in place: CUDA's illegal-address-class errors are sticky, so every later CUDA
        call in this process fails, a new backend on the same GPU included; only a new process recovers. So /health
        goes 503 with the reason at once (load balancers stop sending traffic), and `on_fatal` makes the server
        drain and exit non-zero so the orchestrator (Docker `--restart`, Kubernetes) starts a fresh one, which
        reuses the cached engine and is back in seconds."""
        with self._state_lock:
            if self.slot.current is not model or self.status != "ok":
                return  # already replaced by a reload, already reported, or shutting down
            self.status = "failed"
            self.error = f"the {model.info.get('backend')} backend failed at inference and cannot recover: {exc}"
        log.critical("%s; /health reports 503, the server exits so that it is restarted", self.error)
        if self.on_fatal is not None:
            self.on_fatal(self.error)

    # -- per request --------------------------------------------------------------------------------------------

    def reduce_to(self) -> tuple[int, int] | None:
        """The size decoding may reduce JPEGs to: the served model's input, in `decode_mode: reduced`."""
        model = self.slot.current
        if self.config.inference.server.decode_mode != "reduced" or model is None:
            return None
        size = model.info.get("input_size")
        return (int(size[0]), int(size[1])) if size else None

    @asynccontextmanager
    async def decoded(self, data: bytes, full_size: bool = False, bulk: bool = False) -> AsyncIterator[DecodedImage]:
        """Decode within the shared pixel budget; the pixels stay counted until the `with` block ends (the
        decoded array lives that long). `full_size` decodes every pixel whatever `decode_mode` says. 4xx for bad
        images, 503 + Retry-After when the budget stays full."""
        server = self.config.inference.server
        loop = asyncio.get_running_loop()
        reduce_to = None if full_size else self.reduce_to()
        pool = self.bulk_decode_pool if bulk else self.decode_pool
        # Fast path: while the budget has room for the largest image allowed (`max_pixels`, which the decoder
        # enforces from the header before allocating) and nobody waits, take that much and decode at once, then
        # keep only what the image needed. One trip to the decode pool instead of two (probe, then decode): about
        # 0.4 ms of a request at concurrency 1 (measured through Server-Timing stages; see README, Performance).
        taken = self.pixels.try_take(server.max_pixels)
        if taken:
            try:
                future = loop.run_in_executor(pool, decode_image_scaled, data, server.max_pixels, reduce_to)
                image = await self._finish_decode(future, taken)
                taken = self.pixels.shrink(taken, image.pixels.shape[0] * image.pixels.shape[1])
                yield image
            except _DecodeTimedOut:
                taken = 0  # given back when the decode ends
                raise self._decode_timeout() from None
            finally:
                self.pixels.give_back(taken)
            return
        # Busy: count this image's pixels from its header first, then wait in line for them (first come, first served).
        probe = await loop.run_in_executor(pool, probe_image, data, server.max_pixels, reduce_to)
        pixels = await self.pixels.acquire(probe.decoded_pixels, server.decode_wait_s)
        try:
            future = loop.run_in_executor(pool, decode_image_scaled, data, server.max_pixels, reduce_to)
            yield await self._finish_decode(future, pixels)
        except _DecodeTimedOut:
            pixels = 0
            raise self._decode_timeout() from None
        finally:
            self.pixels.give_back(pixels)

    async def _finish_decode(self, future: asyncio.Future[DecodedImage], pixels: int) -> DecodedImage:
        """The decode's result within `decode_timeout_s`; else _DecodeTimedOut. A thread cannot be stopped: the
        decode runs on, and its `pixels` go back to the budget when it ends (the scan limit and `max_pixels` bound
        how long that is)."""
        done, _ = await asyncio.wait({future}, timeout=self.config.inference.server.decode_timeout_s)
        if not done:
            future.add_done_callback(lambda _: self.pixels.give_back(pixels))
            raise _DecodeTimedOut
        return future.result()

    def _decode_timeout(self) -> GatewayTimeoutError:
        timeout = self.config.inference.server.decode_timeout_s
        self.metrics.rejected.labels(reason="decode_timeout").inc()
        log.warning("an image took more than %g s to decode (decode_timeout_s): answered 504", timeout)
        return GatewayTimeoutError(
            f"decoding the image took longer than {timeout:g} s (inference.server.decode_timeout_s); "
            "send a smaller or simpler image"
        )

    # -- shutdown -----------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Blocking: drain admitted requests, stop workers, close the model."""
        with self._state_lock:
            self.status = "shutting_down"
        self.batcher.close(drain_timeout_s=self.config.inference.server.request_timeout_s)
        self.shadow.close()
        self.inbox.close()
        self.spans.close()
        self.slot.shutdown()
        self.decode_pool.shutdown(wait=True, cancel_futures=True)
        self.bulk_decode_pool.shutdown(wait=True, cancel_futures=True)


def to_sent_image(detections: Detections, image: DecodedImage) -> Detections:
    """Boxes from the decoded pixels' coordinates to those of the image as sent (they differ after a reduced
    decode), clipped to it."""
    sx, sy = image.scale
    if (sx, sy) == (1.0, 1.0) or len(detections) == 0:
        return detections
    xyxy = detections.xyxy * np.array([sx, sy, sx, sy], np.float32)
    np.clip(xyxy[:, 0::2], 0, image.width, out=xyxy[:, 0::2])
    np.clip(xyxy[:, 1::2], 0, image.height, out=xyxy[:, 1::2])
    return replace(detections, xyxy=xyxy.astype(np.float32))


def model_file_problem(path: str) -> str | None:
    """A cheap pre-flight check for `detector serve`: fail fast on a path typo instead of serving 503 forever."""
    p = Path(path)
    if not p.exists():
        return f"model file not found: {p} (train and export one, or pass --model)"
    if not p.is_file():
        return f"model path is not a file: {p}"
    return None
