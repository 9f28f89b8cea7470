"""Champion/challenger shadow scoring: a second model (`inference.shadow.model`) runs on a share of the live
`/predict` and `/predict/batch` images, off the request path, and its detections are scored against the served
model's with `detector.runtime.agreement` (the same rule `detector registry compare` applies offline).

Off the request path means:
* a request only *offers* its already-decoded image after the served model answered: a random draw, a check and a
  `put_nowait`; it never waits, and nothing the shadow does can raise into it (`offer` swallows everything);
* shed first: an image is dropped (counted as shed) while any request waits for the served model, and when the
  shadow's own queue (`inference.shadow.queue`) is full, newest first;
* the challenger runs in a process of its own (api/monitoring/challenger.py: no shared interpreter lock) at the
  lowest OS priority (nice 19) with `inference.shadow.threads` intra-op threads (1 by default), fed one image at a
  time by one thread here, so it uses the CPU the served path leaves idle.

Queued images are kept alive outside the decode pixel budget; the queue bound (plus the one image being scored) is
what bounds that memory.

The challenger loads in the background at start-up and never holds up readiness. A challenger that cannot load,
is not a detector, has other class names than the served model, or fails at inference marks the shadow "failed"
with a short reason (server paths scrubbed) in `GET /model/shadow` and one log line; serving is unaffected. A
reload of the served model keeps the shadow (it lives beside the model slot).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from api.errors import scrub_paths
from api.inference.batching import InferenceResult, Thresholds
from api.model.slot import DetectorLike
from api.monitoring.metrics import Metrics
from detector.config import Config, ShadowConfig
from detector.runtime import Detections
from detector.runtime.agreement import Agreement
from detector.runtime.model_source import is_registry_uri

log = logging.getLogger("api.monitoring.shadow")

ShadowStatus = Literal["off", "loading", "running", "failed"]
Loader = Callable[[str, str], DetectorLike]  # (model path or URI, backend) -> a loaded detector
MAX_DETAIL = 300  # characters of a failure reason shown in /model/shadow
LATENCY_WINDOW = 1000  # recent scored images whose latencies make the p50s


def shadow_config(config: Config) -> Config:
    """`config` as the challenger's loader sees it: `inference.shadow.threads` intra-op threads."""
    inf = config.inference
    return config.model_copy(update={"inference": inf.model_copy(update={"threads": inf.shadow.threads})})


def model_ms(outcome_timings: dict[str, float]) -> float:
    """Model time of a call: pre-processing + inference + post-processing (no queueing, no decoding)."""
    return sum(outcome_timings.get(k, 0.0) for k in ("preprocess", "inference", "postprocess"))


@dataclass
class _Job:
    image: npt.NDArray[np.uint8]
    served: Detections  # in the decoded image's pixels, before any class filter
    served_names: dict[str, str]
    key: Thresholds
    served_ms: float
    on_disagree: Callable[[], None] | None = None  # called (on the shadow thread) when the two answers differ


class Shadow:
    """The challenger, its queue and its scores. `offer` is called on the event loop; the rest runs on one thread."""

    def __init__(
        self,
        settings: ShadowConfig,
        backend: str,
        loader: Loader | None,
        metrics: Metrics,
        served_busy: Callable[[], bool],
        served_names: Callable[[], dict[str, str] | None],
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.backend = settings.backend or backend
        self.loader = loader
        self.metrics = metrics
        self.served_busy = served_busy
        self.served_names = served_names
        self.draw = draw
        self.status: ShadowStatus = "loading" if settings.model and loader is not None else "off"
        self.detail: str | None = None
        self.samples = 0
        self.shed = 0
        self.pending = 0  # images queued for the challenger or being scored now
        self.errors = 0
        self.agreement = Agreement(iou=settings.iou)
        self.latency: dict[str, deque[float]] = {
            "served": deque(maxlen=LATENCY_WINDOW),
            "challenger": deque(maxlen=LATENCY_WINDOW),
        }
        self.info: dict[str, Any] = {}
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=settings.queue)
        self._lock = threading.Lock()  # the scores, read by /model/shadow while the thread writes them
        self._closing = False
        self._thread: threading.Thread | None = None
        metrics.set_shadow_status(self.status)

    # -- request side (event loop) ------------------------------------------------------------------------------

    def start(self) -> None:
        if self.status == "off":
            return
        self._thread = threading.Thread(target=self._work, name="shadow", daemon=True)
        self._thread.start()

    def offer(
        self,
        image: npt.NDArray[np.uint8],
        outcome: InferenceResult,
        key: Thresholds,
        on_disagree: Callable[[], None] | None = None,
    ) -> None:
        """Maybe queue this answered image for the challenger. Never blocks, never raises. `on_disagree` is called
        from the shadow thread if the challenger's boxes differ from the served ones (the inbox keeps the image)."""
        try:
            if self.status != "running" or self.draw() >= self.settings.sample:
                return
            if self.served_busy():
                self._shed("served_busy")
                return
            names = {str(k): str(v) for k, v in outcome.model.get("names", {}).items()}
            job = _Job(image, outcome.detections, names, key, model_ms(outcome.timings_ms), on_disagree)
            with self._lock:
                self.pending += 1  # before the put: the worker may take the job at once
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                with self._lock:
                    self.pending -= 1
                raise
        except queue.Full:
            self._shed("queue_full")
        except Exception:  # a bug here must never reach a client
            log.exception("shadow: offering an image failed")

    def _shed(self, reason: str) -> None:
        with self._lock:
            self.shed += 1
        self.metrics.shadow_shed.labels(reason=reason).inc()

    # -- the shadow thread --------------------------------------------------------------------------------------

    def _work(self) -> None:
        challenger = self._load()
        if challenger is None:
            return
        try:
            while True:
                job = self._queue.get()
                if job is None or self.status != "running":
                    return
                try:
                    self._score(challenger, job)
                except Exception as exc:
                    self._fail(f"the challenger failed at inference: {type(exc).__name__}: {exc}", error=True)
                    return
                finally:
                    with self._lock:
                        self.pending -= 1
        finally:
            self._close(challenger)

    def _load(self) -> DetectorLike | None:
        assert self.loader is not None  # status "off" otherwise, and the thread is not started
        try:
            challenger = self.loader(self.settings.model, self.backend)
        except Exception as exc:
            self._fail(f"the challenger could not be loaded: {exc}", error=True)
            return None
        try:
            challenger.warmup()
            self.info = challenger.describe()
            problem = self._mismatch(self.served_names())
        except Exception as exc:
            problem = f"the challenger failed its warm-up run: {type(exc).__name__}: {exc}"
        if problem is None and self._closing:
            problem = "shutting down"
        if problem is not None:
            self._fail(problem, error=problem != "shutting down")
            self._close(challenger)
            return None
        self._set_status("running")
        log.info("shadow: challenger %s (version %s) running", self.source, self.info.get("version"))
        return challenger

    def _mismatch(self, served: dict[str, str] | None) -> str | None:
        """Why the challenger cannot be compared with a served model of classes `served` (None: it can)."""
        task = self.info.get("task")
        if task not in (None, "detect"):
            return f"the challenger is a {task} model, not a detector"
        mine = {str(k): str(v) for k, v in self.info.get("names", {}).items()}
        if served is not None and mine != served:
            return (
                f"the challenger's classes differ from the served model's: {_classes(mine)} vs {_classes(served)}; "
                "agreement is measured between models of the same classes"
            )
        return None

    def _score(self, challenger: DetectorLike, job: _Job) -> None:
        problem = self._mismatch(job.served_names)  # the served model may have been reloaded with other classes
        if problem is not None:
            self._fail(problem, error=True)
            return
        # The request's thresholds; without an explicit conf each model applies its own per-class ones.
        conf, iou, max_det, class_conf = job.key
        started = time.perf_counter()
        candidate = challenger.predict_batch(
            [job.image], conf=conf, iou=iou, max_det=max_det, conf_per_class=dict(class_conf) or None
        )[0]
        challenger_ms = (time.perf_counter() - started) * 1e3
        one = Agreement(iou=self.settings.iou)  # this image alone: what the counters add
        one.update(job.served, candidate)
        with self._lock:
            self.agreement.update(job.served, candidate)
            self.samples += 1
            self.latency["served"].append(job.served_ms)
            self.latency["challenger"].append(challenger_ms)
        m = self.metrics
        m.shadow_samples.inc()
        for name, counts in one.per_class.items():
            for kind in ("reference", "candidate", "matched"):
                if getattr(counts, kind):
                    m.shadow_boxes.labels(class_name=name, kind=kind).inc(getattr(counts, kind))
        if one.matched:
            m.shadow_confidence_shift.inc(one.confidence_shift * one.matched)
        m.shadow_latency.labels(model="served").observe(job.served_ms / 1e3)
        m.shadow_latency.labels(model="challenger").observe(challenger_ms / 1e3)
        if job.on_disagree is not None and one.match_rate < 1.0:
            job.on_disagree()

    def _fail(self, reason: str, error: bool) -> None:
        """Stop scoring for good: the reason goes to /model/shadow (short, no server paths) and to the log, once."""
        with self._lock:
            if self.status == "failed":
                return
            self.status = "failed"
            detail = scrub_paths(reason)
            self.detail = detail if len(detail) <= MAX_DETAIL else detail[: MAX_DETAIL - 3] + "..."
            if error:
                self.errors += 1
        if error:
            self.metrics.shadow_errors.inc()
            log.error("shadow scoring of %s stopped (serving is unaffected): %s", self.settings.model, reason)
        self.metrics.set_shadow_status("failed")
        self._drain()

    def _set_status(self, status: ShadowStatus) -> None:
        with self._lock:
            if self.status == "failed":
                return
            self.status = status
        self.metrics.set_shadow_status(status)

    def _drain(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    @staticmethod
    def _close(challenger: DetectorLike) -> None:
        try:
            challenger.close()
        except Exception:
            log.exception("shadow: closing the challenger failed")

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the thread (after the image it is scoring, or after a load in progress) and close the challenger."""
        self._closing = True
        if self.status in ("running", "loading"):
            self._set_status("off")
        self._drain()
        # Full only if an offer raced the drain: the thread then sees the status and stops anyway.
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    # -- reporting ----------------------------------------------------------------------------------------------

    @property
    def source(self) -> str:
        """The challenger as /model/shadow names it: a registry URI, or a file's name (never a server path)."""
        model = self.settings.model
        return model if is_registry_uri(model) else Path(model).name

    def snapshot(self) -> dict[str, Any]:
        """The `GET /model/shadow` body."""
        with self._lock:
            scores = self.agreement.as_dict()
            served = list(self.latency["served"])
            challenger = list(self.latency["challenger"])
            body: dict[str, Any] = {
                "status": self.status,
                "challenger": None,
                "detail": self.detail,
                "sample": self.settings.sample,
                "samples": self.samples,
                "shed": self.shed,
                "errors": self.errors,
                "pending": self.pending,
            }
        if self.settings.model:
            registry = self.info.get("registry") or {}
            body["challenger"] = {
                "source": self.source,
                "version": str(registry.get("version") or self.info.get("version") or "") or None,
                "backend": self.info.get("backend") or self.backend,
            }
        body.update(
            {
                "iou": scores["iou"],
                "match_rate": scores["match_rate"],
                "confidence_shift": scores["confidence_shift"],
                "reference_boxes": scores["reference_boxes"],
                "candidate_boxes": scores["candidate_boxes"],
                "matched": scores["matched"],
                "per_class": scores["per_class"],
                "latency_ms": {"served_p50": _p50(served), "challenger_p50": _p50(challenger)},
            }
        )
        return body


def _p50(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _classes(names: dict[str, str]) -> str:
    listed = ", ".join(names[k] for k in sorted(names, key=lambda k: int(k) if k.isdigit() else k))
    return f"[{listed[:80]}{'...' if len(listed) > 80 else ''}]"
