"""Prometheus metrics, one registry per app (tests build many apps in one process; the global registry would
refuse duplicate names) and a pure ASGI middleware that counts and times every request by route template."""

from __future__ import annotations

import time
from collections import Counter as Counter_
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.middleware import HttpMiddleware

# Latency buckets from 1 ms to 10 s: the 128-px model answers in a few ms, a big model on CPU in seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # The process itself, as prometheus_client's default registry would show it: resident memory and CPU
        # seconds (a model that is not freed after a reload shows as memory that only grows), open files, and the
        # garbage collector's passes per generation (detector/runtime/heap.py).
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        PlatformCollector(registry=r)
        self.requests = Counter(
            "detector_http_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "detector_http_request_duration_seconds",
            "Time from request start to response end, by route template",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "detector_inference_seconds",
            "Backend time of one batch call (pre+infer+post)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "detector_queue_wait_seconds",
            "Time a request waited for a model worker",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # One series per Server-Timing stage of /predict (read, decode, queue_wait, preprocess, inference,
        # postprocess): a fixed set of names, so the label cannot grow. The dashboard's "latency per stage".
        self.stages = Histogram(
            "detector_stage_seconds",
            "Time of each stage of a /predict request (the entries of its Server-Timing header)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # Per-class rates of what the model finds on live traffic (bounded by the model's class count).
        self.detections = Counter(
            "detector_detections", "Boxes returned by /predict, by class name", ["class_name"], registry=r
        )
        # Drift against the served model's reference profile (api/monitoring/drift.py), set when /metrics is scraped.
        self.drift_psi = Gauge(
            "detector_drift_psi",
            "Population-stability index of live traffic vs the model's reference profile (NaN: too few images)",
            ["statistic"],
            registry=r,
        )
        self.drift_share = Gauge(
            "detector_drift_share",
            "Share of each histogram bin per drift statistic, in the reference profile and in the live window",
            ["statistic", "bin", "source"],
            registry=r,
        )
        self.drift_images = Gauge("detector_drift_window_images", "Images in the live drift window", registry=r)
        # The active-learning inbox (api/monitoring/inbox.py).
        self.inbox_kept = Counter(
            "detector_inbox_kept",
            "Images written to the inbox, by reason (uncertain, shadow_disagreement, drift); one image may count twice",
            ["reason"],
            registry=r,
        )
        self.inbox_skipped = Counter(
            "detector_inbox_skipped",
            "Images that qualified for the inbox but were not written, by cause (queue_full, full, classes, error)",
            ["cause"],
            registry=r,
        )
        self.inbox_bytes = Gauge(
            "detector_inbox_bytes", "Bytes the inbox folder holds (images, labels, journal)", registry=r
        )
        self.golden_failures = Counter(
            "detector_golden_failures",
            "Periodic golden-image checks the served model failed (then reloaded)",
            registry=r,
        )
        self.before_collect: list[Callable[[], None]] = []  # refreshes run by the /metrics route before rendering
        self.batch_size = Histogram("detector_batch_size", "Images per backend call", buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("detector_queue_depth", "Requests admitted and waiting for a model worker", registry=r)
        self.in_flight = Gauge(
            "detector_predict_in_flight", "Predict requests admitted and not yet answered", registry=r
        )
        self.uploads = Gauge("detector_uploads_in_flight", "Request bodies being received now", registry=r)
        self.pixels_held = Gauge(
            "detector_decode_pixels_held", "Decoded pixels held by requests (the shared pixel budget)", registry=r
        )
        self.rejected = Counter(
            "detector_rejected_requests",
            "Requests refused with 503, by reason (queue_full, uploads_full, pixel_budget, shutdown)",
            ["reason"],
            registry=r,
        )
        self.reloads = Counter("detector_model_reloads", "Model reload attempts by outcome", ["outcome"], registry=r)
        self.model_info = Gauge(
            "detector_model_info", "The model being served (value 1)", ["version", "backend"], registry=r
        )
        # Shadow scoring (api/monitoring/shadow.py). Counters and sums only, so that replicas aggregate by summing: the
        # match rate of a fleet is 2 * sum(matched) / (sum(reference) + sum(candidate)).
        self.shadow_samples = Counter("detector_shadow_samples", "Images the challenger scored", registry=r)
        self.shadow_shed = Counter(
            "detector_shadow_shed",
            "Sampled images not scored, by reason (queue_full, served_busy)",
            ["reason"],
            registry=r,
        )
        self.shadow_errors = Counter("detector_shadow_errors", "Challenger load or inference failures", registry=r)
        self.shadow_boxes = Counter(
            "detector_shadow_boxes",
            "Boxes on scored images by served-model class: reference (served), candidate (challenger), matched",
            ["class_name", "kind"],
            registry=r,
        )
        self.shadow_confidence_shift = Gauge(
            "detector_shadow_confidence_shift_sum",
            "Sum over matched boxes of challenger minus served confidence (divide by the matched count)",
            registry=r,
        )
        self.shadow_latency = Histogram(
            "detector_shadow_model_seconds",
            "Model time (pre+infer+post) of scored images, for the served model and the challenger",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.shadow_status = Gauge(
            "detector_shadow_status", "Shadow scoring state (value 1 on the current one)", ["status"], registry=r
        )

    def set_sources(self, queue_depth: Callable[[], int], in_flight: Callable[[], int]) -> None:
        self.queue_depth.set_function(lambda: float(queue_depth()))
        self.in_flight.set_function(lambda: float(in_flight()))

    def set_shadow_status(self, status: str) -> None:
        self.shadow_status.clear()
        self.shadow_status.labels(status=status).set(1)

    def observe_stages(self, timings_ms: Mapping[str, float]) -> None:
        for stage, ms in timings_ms.items():
            if stage != "total":
                self.stages.labels(stage=stage).observe(ms / 1e3)

    def observe_detections(self, class_names: Iterable[str]) -> None:
        for name, count in Counter_(class_names).items():
            self.detections.labels(class_name=name).inc(count)

    def set_model(self, version: str, backend: str) -> None:
        self.model_info.clear()
        self.model_info.labels(version=version, backend=backend).set(1)


class MetricsMiddleware(HttpMiddleware):
    """Counts requests by the *route template* (`/predict`), never the raw path, so fuzzers and scanners hitting
    random URLs cannot blow up label cardinality (unmatched paths are all `<unmatched>`)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        super().__init__(app)
        self.metrics = metrics

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        status = 500  # if the app raises before answering, ServerErrorMiddleware (outside us) answers 500

        async def send_wrapper(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = int(msg["status"])
            await send(msg)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", None) or "<unmatched>"
            method = scope.get("method", "")
            self.metrics.requests.labels(route=route, method=method, status=str(status)).inc()
            self.metrics.latency.labels(route=route, method=method).observe(time.perf_counter() - start)
