"""OpenTelemetry tracing, opt-in (`inference.tracing`).

FastAPI (0.165+) traces natively once it is given a tracer provider: a SERVER span per request, with the W3C
`traceparent` of the caller as its parent, and spans for dependency resolution, the endpoint and serialization.
This module makes that provider (the OpenTelemetry SDK, exporting over OTLP/HTTP in batches from a background
thread) and adds what FastAPI cannot see: one child span per stage of an image's way through the service (read,
decode, queue_wait, preprocess, inference, postprocess), built from the timings the service measures anyway for
`Server-Timing` and `timings_ms`, so tracing adds no clock reads on the request path. Stages run one after the
other, so each stage's span starts where the previous one ended. FastAPI's operation spans are off (see
`fastapi_telemetry`).

Off (the default), FastAPI's tracing is switched off too (a provider configured elsewhere in the process is not
used), and the OpenTelemetry SDK and exporter are never imported.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fastapi.telemetry import TelemetryConfig

from detector.config import TracingConfig
from detector.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("api")

# The stages of `predicting` (api/inference/pipeline.py) in the order they happen.
STAGES = ("read", "decode", "queue_wait", "preprocess", "inference", "postprocess")


def tracer_provider(settings: TracingConfig, exporter: SpanExporter | None = None) -> TracerProvider | None:
    """The provider for `FastAPI(telemetry=...)` and the stage spans; None when tracing is off. `exporter`: where
    spans go (default: OTLP/HTTP to `settings.endpoint`, or the standard OTEL_EXPORTER_OTLP_* variables)."""
    if not settings.enabled:
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    except ImportError as exc:  # pragma: no cover - the serve extra installs it
        raise ConfigError(
            f"inference.tracing.enabled needs the OpenTelemetry SDK and OTLP exporter (the serve extra): {exc}"
        ) from exc
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=settings.endpoint or None, timeout=settings.export_timeout_s)
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.service_name}),
        sampler=ParentBased(TraceIdRatioBased(settings.sample)),  # a caller's sampling decision wins
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    log.info("tracing on: spans go to %s", settings.endpoint or "the OTEL_EXPORTER_OTLP_* endpoint")
    return provider


def fastapi_telemetry(provider: TracerProvider | None) -> TelemetryConfig:
    """`FastAPI(telemetry=...)`: traces with our provider, or nothing. Metrics stay with Prometheus (/metrics) and
    logs with the logging module, so FastAPI's OpenTelemetry metrics and logs are off either way."""
    if provider is None:
        return {"tracing": False, "metrics": False, "logs": False, "auto_configure": False}
    # FastAPI's operation spans (one per dependency, the endpoint, serialization) cost more than the stages they
    # would show (the service's own stage spans cover the endpoint): the SERVER span per request is kept.
    return {
        "tracer_provider": provider,
        "operation_spans": False,
        "metrics": False,
        "logs": False,
        "auto_configure": False,
    }


class StageSpans:
    """One span per measured stage of a prediction, children of the request's span. The spans are built on a
    thread of their own from the request's span context and its timings: building seven SDK spans took 190 us
    (measured, AMD EPYC), a few per cent of a small model's /predict, so the request path only queues a tuple."""

    def __init__(self, provider: TracerProvider | None, queue_size: int = 1024) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("detector.api") if provider is not None else None
        self._queue: queue.Queue[tuple[Any, int, dict[str, float], dict[str, Any]] | None] = queue.Queue(queue_size)
        self._thread: threading.Thread | None = None
        self.dropped = 0
        if self._tracer is not None:
            self._thread = threading.Thread(target=self._work, name="trace-stages", daemon=True)
            self._thread.start()

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def record(self, started_ns: int, timings_ms: Mapping[str, float], attributes: Mapping[str, Any]) -> None:
        """`started_ns`: wall-clock time (time.time_ns()) the prediction began; `timings_ms`: its stages.
        `attributes` go on a `detector.predict` span that holds the stages. Called in the request's context (its
        span is the parent); never blocks, never raises."""
        if self._tracer is None:
            return
        from opentelemetry import trace

        parent = trace.get_current_span().get_span_context()
        if not parent.is_valid or not parent.trace_flags.sampled:
            return  # nothing to hang the stages on, or this trace is not kept
        try:
            self._queue.put_nowait((parent, started_ns, dict(timings_ms), dict(attributes)))
        except queue.Full:
            self.dropped += 1

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._spans(*item)
            except Exception:  # tracing must never take the service down
                log.exception("tracing: recording a prediction's spans failed")

    def _spans(self, parent_context: Any, started_ns: int, timings_ms: dict[str, float], attrs: dict[str, Any]) -> None:
        from opentelemetry import trace

        assert self._tracer is not None
        tracer = self._tracer
        total_ns = int(timings_ms.get("total", 0.0) * 1e6)
        request = trace.set_span_in_context(trace.NonRecordingSpan(parent_context))
        predict = tracer.start_span("detector.predict", context=request, start_time=started_ns, attributes=attrs)
        context = trace.set_span_in_context(predict)
        at = started_ns
        for stage in STAGES:
            if stage not in timings_ms:
                continue
            duration = int(timings_ms[stage] * 1e6)
            tracer.start_span(f"detector.{stage}", context=context, start_time=at).end(end_time=at + duration)
            at += duration
        predict.end(end_time=max(at, started_ns + total_ns))

    def close(self, timeout_s: float = 5.0) -> None:
        """Build what is queued, export what is buffered, stop the threads."""
        if self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=timeout_s)
            self._thread.join(timeout_s)
        if self.provider is not None:
            self.provider.shutdown()
