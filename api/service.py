"""Everything one running app holds: configuration, the model slot, the micro-batcher, the decode pool, status.

Created in the app's lifespan (so nothing loads at import) and reached from routes through `api.deps`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from api.batching import MicroBatcher
from api.errors import ConflictError
from api.metrics import Metrics
from api.model_slot import DetectorLike, LoadedModel, ModelSlot
from detector.config import Config
from detector.errors import DetectorError, ModelLoadError
from detector.runtime.backends.base import BackendOptions
from detector.runtime.engines import EngineBuilder
from detector.runtime.images import decode_image

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
        )

    return load


class Service:
    def __init__(self, config: Config, factory: DetectorFactory, metrics: Metrics) -> None:
        server = config.inference.server
        self.config = config
        self.factory = factory
        self.metrics = metrics
        self.status: Status = "loading"
        self.error = ""  # why the initial load failed, for /health
        self.slot = ModelSlot()
        self.batcher = MicroBatcher(
            self.slot,
            max_batch=server.max_batch,
            max_wait_ms=server.max_wait_ms,
            queue_size=server.queue_size,
            workers=server.workers,
            metrics=metrics,
        )
        # Decoding is CPU work that releases the GIL in PIL's C code: its own pool keeps it off the event loop and
        # away from the default pool that Starlette uses for file I/O.
        self.decode_pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2), thread_name_prefix="decode")
        self._reload_lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self.status == "ok"

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
        except Exception as exc:
            detector.close()
            raise ModelLoadError(f"{model_path} loaded but failed its warm-up run: {exc}") from exc
        model = LoadedModel(detector, source=model_path)
        log.info(
            "model %s (version %s) ready on %s in %.2f s",
            model_path,
            model.info.get("version"),
            model.info.get("backend"),
            time.perf_counter() - started,
        )
        return model

    def load_initial(self) -> None:
        """Blocking; run in a thread from the lifespan so /health answers "loading" meanwhile."""
        inf = self.config.inference
        try:
            model = self._load(inf.model_path, inf.backend)
        except Exception as exc:
            self.status, self.error = "failed", str(exc)
            log.error("the model could not be loaded; /health reports 503 until a reload succeeds: %s", exc)
            return
        if self.status == "shutting_down":  # shut down while we were loading
            model.retire()
            return
        self._install(model)
        self.status = "ok"

    def reload(self, model_path: str, backend: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """Blocking. Load + warm up the new model while the old one serves, then swap; returns (old, new) info."""
        if not self._reload_lock.acquire(blocking=False):
            raise ConflictError("a model reload is already in progress; wait for it to finish")
        try:
            try:
                model = self._load(model_path, backend)
            except Exception:
                self.metrics.reloads.labels(outcome="failed").inc()
                raise
            old = self._install(model)
            if self.status in ("loading", "failed"):
                self.status, self.error = "ok", ""
            self.metrics.reloads.labels(outcome="ok").inc()
            return (old.info if old else None), model.info
        finally:
            self._reload_lock.release()

    def _install(self, model: LoadedModel) -> LoadedModel | None:
        old = self.slot.swap(model)
        self.metrics.set_model(str(model.info.get("version")), str(model.info.get("backend")))
        return old

    # -- per request --------------------------------------------------------------------------------------------

    async def decode(self, data: bytes) -> npt.NDArray[np.uint8]:
        max_pixels = self.config.inference.server.max_pixels
        return await asyncio.get_running_loop().run_in_executor(self.decode_pool, decode_image, data, max_pixels)

    # -- shutdown -----------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Blocking: drain admitted requests, stop workers, close the model."""
        self.status = "shutting_down"
        self.batcher.close(drain_timeout_s=self.config.inference.server.request_timeout_s)
        self.slot.swap(None)
        self.decode_pool.shutdown(wait=True, cancel_futures=True)


def model_file_problem(path: str) -> str | None:
    """A cheap pre-flight check for `detector serve`: fail fast on a path typo instead of serving 503 forever."""
    p = Path(path)
    if not p.exists():
        return f"model file not found: {p} (train and export one, or pass --model)"
    if not p.is_file():
        return f"model path is not a file: {p}"
    return None
