"""The Ray Serve deployment: each replica builds `api.app.create_app(config)` (the app `detector serve` runs, every
route, schema, error mapping and metric included) and serves it through `serve.ingress`.

How Ray Serve (2.60) runs an ingress app, and what this class adds to it:
* `serve.ingress()` without an app defers building it to replica start (`__serve_build_asgi_app__`, called after
  `__init__`), so each replica builds its own app from the configuration it was given: nothing model-related is
  pickled, and the model loads in that replica's process.
* The replica then runs the app's ASGI lifespan (uvicorn's `LifespanOn`, the same code `detector serve` runs), so the
  app's own lifespan creates the Service, loads and warms up the model and starts its micro-batcher. That lifespan
  returns at once and loads in a thread (under uvicorn, /health answers "loading" meanwhile). Under Ray a replica
  gets traffic as soon as its start-up returns, so `_ready_lifespan` holds start-up until the load has finished: a
  loading replica stays STARTING and gets no requests, and a failed load fails the replica's start, which Ray
  retries on a fresh replica (and reports the deployment unhealthy while it cannot start one).
* `check_health` (every `health_check_period_s`) runs the app's own /health handler: 503 there (model gone, shutting
  down) raises, and Ray replaces the replica.
* On shutdown Ray stops routing to the replica, waits for its ongoing requests (`graceful_shutdown_timeout_s`), then
  runs the lifespan's shutdown, which drains the batcher and closes the model, as under uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from ray import serve
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.app import create_app
from api.routes.health import health
from api.service import Service
from detector.config import Config
from detector.errors import ModelLoadError
from detector.registry import registry_resolver
from export.builders import engine_builder
from serve_ray.shadow_metrics import ShadowMetricsMirror

log = logging.getLogger("serve_ray")

REPLICA_HEADER = "x-replica-id"


class ReplicaIdMiddleware:
    """Adds `X-Replica-Id` to every response, so clients and tests can see which replica answered (the app's own
    /metrics are per replica too, and this says whose they are)."""

    def __init__(self, app: ASGIApp, replica_id: str) -> None:
        self.app = app
        self.header = (REPLICA_HEADER.encode(), replica_id.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_with_id)


def _ready_lifespan(app: FastAPI) -> None:
    """Wrap the app's lifespan so start-up returns only once the initial model load is over (see the module doc)."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        async with inner(app_) as state:
            service: Service = app_.state.service
            while service.status == "loading":
                await asyncio.sleep(0.05)
            if service.status != "ok":
                # Raised inside the app's lifespan, whose `finally` still closes the service.
                raise ModelLoadError(f"replica start-up failed: {service.error or service.status}")
            yield state

    app.router.lifespan_context = lifespan


@serve.deployment(
    # Defaults; the Serve config file (deploy/ray/serve_config.yaml) and `detector serve --engine ray` set these,
    # and `serve_ray.app.build_app` derives the request bounds from the app's own queue limit.
    ray_actor_options={"num_cpus": 1},
    health_check_period_s=5,
    health_check_timeout_s=10,
)
@serve.ingress()
class DetectorDeployment:
    def __init__(self, config: dict[str, Any]) -> None:
        # A plain dict crosses the process boundary; it is the fully resolved configuration, validated again here.
        self.config = Config.model_validate(config)
        self.fastapi: FastAPI | None = None  # not `app`: the ingress wrapper owns that name
        self.shadow_metrics: ShadowMetricsMirror | None = None

    def __serve_build_asgi_app__(self) -> FastAPI:
        mlflow_cfg, inf = self.config.train.mlflow, self.config.inference
        resolver = registry_resolver(mlflow_cfg.tracking_uri, inf.registry_cache_dir)  # models:/name@alias paths
        # A replica is a process of its own that serves and nothing else: its startup objects are frozen too.
        app = create_app(self.config, engine_builder=engine_builder(), model_resolver=resolver, freeze_when_loaded=True)
        _ready_lifespan(app)
        app.add_middleware(ReplicaIdMiddleware, replica_id=serve.get_replica_context().replica_id.unique_id)
        self.fastapi = app
        self.shadow_metrics = ShadowMetricsMirror(app.state.metrics.registry)
        return app

    async def check_health(self) -> None:
        """Ray's periodic health check: the app's own /health handler, so Ray and a load balancer see the same."""
        if self.fastapi is None:
            raise RuntimeError("the app is not built yet")
        service: Service | None = self.fastapi.state.service
        if service is None:
            raise RuntimeError("the app's lifespan has not started")
        if self.shadow_metrics is not None:
            # This replica's shadow counters into Ray's metrics, where replicas add up (serve_ray/shadow_metrics.py).
            try:
                self.shadow_metrics.sync()
            except Exception:  # a metrics hiccup must never make Ray replace a healthy replica
                log.exception("copying the shadow metrics to Ray failed")
        response = await health(service)
        if response.status_code != 200:
            raise RuntimeError(f"/health answers {response.status_code}: {bytes(response.body).decode()}")
