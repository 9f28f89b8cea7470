"""The app factory. Nothing is loaded at import: `create_app` wires routes and middleware; the lifespan creates the
Service, starts loading the model in a thread (so /health answers "loading" meanwhile), and on shutdown drains
admitted requests before closing the model."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from api.admission.auth import OPEN_PATHS, AuthMiddleware, KeyRing, api_key_header, install_audit_file, load_keys
from api.admission.limits import BodySizeLimitMiddleware, ReadTimeoutMiddleware
from api.docs import STATIC_URL, install_documented_schemas
from api.errors import install_error_handlers
from api.model.registry import registry_aware
from api.monitoring.challenger import challenger_loader
from api.monitoring.metrics import Metrics, MetricsMiddleware
from api.monitoring.shadow import shadow_config
from api.monitoring.tracing import StageSpans, fastapi_telemetry, tracer_provider
from api.routes import admin, annotated, batch, health, metrics, model, predict, video
from api.service import DetectorFactory, Service, default_detector_factory
from detector.config import Config
from detector.runtime.draw import preload as preload_drawing
from detector.runtime.engines import EngineBuilder
from detector.runtime.heap import freeze_startup_objects
from detector.runtime.model_source import ModelResolver

log = logging.getLogger("api")

DESCRIPTION = """\
Object detection over HTTP. `POST /predict` takes an image (multipart `file` or JSON `image_base64`) and returns
boxes in pixels of the image as sent. Errors are `{"detail": "..."}` with a 4xx status saying what to fix;
overload is 503 with `Retry-After`.
"""


def create_app(
    config: Config | None = None,
    detector_factory: DetectorFactory | None = None,
    engine_builder: EngineBuilder | None = None,
    model_resolver: ModelResolver | None = None,
    on_fatal: Callable[[str], None] | None = None,
    freeze_when_loaded: bool = False,
) -> FastAPI:
    """Build the app for `config` (default: `configs/` + environment); `detector_factory(path, backend)` loads
    models (default: `Detector.load` with the configured backend options and the injected `engine_builder`);
    `model_resolver` (injected by the CLI) turns `models:/name@alias` registry URIs into local files; `on_fatal`
    is called when the served backend fails beyond repair (`api.server` stops and exits non-zero);
    `freeze_when_loaded`: once the model is loaded, keep everything loaded so far out of the garbage collector's
    full passes (`detector.runtime.heap`: a pause of 73-94 ms each, every few seconds under load). Only for a
    process that is the service (`api.server`); a test's process would keep its own objects frozen too."""
    if config is None:
        from detector.config import load_config

        config = load_config()
    factory = registry_aware(detector_factory or default_detector_factory(config, engine_builder), model_resolver)
    # The challenger: files or registry URIs like the served model, run in a process of its own with
    # inference.shadow.threads threads (api/monitoring/challenger.py says why not a thread).
    shadow_factory = registry_aware(challenger_loader(shadow_config(config)), model_resolver)
    app_metrics = Metrics()
    provider = tracer_provider(config.inference.tracing)  # None when off: nothing of the SDK is imported

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = Service(config, factory, app_metrics, on_fatal, shadow_factory, StageSpans(provider))
        app.state.service = service
        service.shadow.start()  # loads in its own thread; readiness never waits for it
        service.inbox.start()

        def start() -> None:
            # The drawing/tracking libraries take seconds to import (scipy): pay that before /health says ok, not
            # on a request, and not while the first requests are served (an import holds the GIL for seconds).
            try:
                preload_drawing()
            except Exception:  # drawing is one route's concern: never let it stop the model from loading
                log.exception("could not preload the drawing library; /predict/annotated will load it on first use")
            service.load_initial()
            if freeze_when_loaded:
                log.info(
                    "%d objects loaded at startup are kept out of the garbage collector's passes",
                    freeze_startup_objects(),
                )

        loading = asyncio.create_task(asyncio.to_thread(start))
        watching = asyncio.create_task(service.watch_golden())  # inference.golden.period_s
        try:
            yield
        finally:
            watching.cancel()
            service.status = "shutting_down"
            await loading  # a load cannot be interrupted; wait so its model gets closed, not leaked
            await asyncio.to_thread(service.close)  # also flushes the spans still buffered
            log.info("shutdown complete")

    app = FastAPIOffline(  # /docs and /redoc with local assets (api/docs.py)
        title="YOLO detector",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        static_url=STATIC_URL,
        telemetry=fastapi_telemetry(provider),
    )
    install_documented_schemas(app, api_key_header, OPEN_PATHS)  # the key header, for Swagger's "Authorize"
    app.state.metrics = app_metrics
    app.state.service = None
    install_error_handlers(app)
    # Added last = outermost: metrics also count what the size limit and the read timeout refuse.
    app.add_middleware(ReadTimeoutMiddleware, timeout_s=config.inference.server.read_timeout_s)
    app.add_middleware(
        BodySizeLimitMiddleware, max_image_bytes=int(config.inference.server.max_upload_mb * 1024 * 1024)
    )
    server = config.inference.server
    # Keys are checked from the headers before any body is read; inside the metrics, which count 401/403/429 too.
    ring = KeyRing(load_keys(server.auth))
    install_audit_file(server.auth.audit_log)
    app.state.keys = ring
    app.add_middleware(AuthMiddleware, ring=ring, admin_key_set=bool(server.admin_api_key))
    app.add_middleware(MetricsMiddleware, metrics=app_metrics)
    app.include_router(health.router)
    for module in (predict, annotated, batch, video, model, metrics, admin):  # AuthMiddleware checks their keys
        app.include_router(module.router)
    return app
