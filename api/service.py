"""Everything one running app holds: configuration, the model slot, the micro-batcher, the decode pool, status.

Created in the app's lifespan (so nothing loads at import) and reached from routes through `api.deps`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from api.admission.pixel_budget import PixelBudget
from api.admission.spool import prepare as prepare_spool
from api.admission.uploads import JobGate, UploadGate
from api.errors import ConflictError, ServiceUnavailableError
from api.inference.batching import MicroBatcher, Thresholds
from api.inference.decoding import Decoder
from api.inference.pipeline import Pipeline
from api.model.files import checked_model_path, model_dir
from api.model.slot import DetectorLike, LoadedModel, ModelSlot
from api.monitoring.drift import DriftMonitor
from api.monitoring.inbox import Inbox
from api.monitoring.metrics import Metrics
from api.monitoring.shadow import Shadow
from api.monitoring.tracing import StageSpans
from detector.config import Config
from detector.errors import DetectorError, ModelLoadError
from detector.runtime import Detections
from detector.runtime.backends.base import BackendOptions
from detector.runtime.engines import EngineBuilder
from detector.runtime.golden import GoldenImage, golden_from_metadata, golden_problem
from detector.runtime.model_source import is_registry_uri

log = logging.getLogger("api")


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
            bulk_hold_ms=server.bulk_hold_ms,
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
        # The clip spool's folder, made if missing, without the clips a killed process left (api/admission/spool.py).
        prepare_spool(server.video_tmp_dir or None)
        self.pixels = PixelBudget(server.decode_pixel_budget, metrics)
        self.decoder = Decoder(server, self.pixels, metrics)
        drift = config.inference.drift
        self.drift = DriftMonitor(metrics, drift.window, drift.min_images, drift.enabled)
        self.inbox = Inbox(config.inference.inbox, metrics)  # off by default; started with the app
        self.spans = spans or StageSpans(None)  # inference.tracing: the stages of each prediction as spans
        # What every prediction route runs its images through (api/inference/pipeline.py).
        self.pipeline = Pipeline(
            config.inference,
            self.slot,
            self.batcher,
            self.decoder,
            self.uploads,
            metrics,
            self.drift,
            self.inbox,
            self.shadow,
            self.spans,
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
            key = Thresholds(th.get("conf"), th.get("iou", 0.7), th.get("max_det", 300))
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
        the model directory (see api/model/files.py), checked before anything is read.
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
        self.decoder.close()


def model_file_problem(path: str) -> str | None:
    """A cheap pre-flight check for `detector serve`: fail fast on a path typo instead of serving 503 forever."""
    p = Path(path)
    if not p.exists():
        return f"model file not found: {p} (train and export one, or pass --model)"
    if not p.is_file():
        return f"model path is not a file: {p}"
    return None
