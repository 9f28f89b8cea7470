"""Run the Serve application from a Serve config file on a Ray cluster (`detector serve --engine ray`).

The file is Ray's own format (what `serve run` reads); this applies the CLI's choices on top of it: the resolved
project configuration, a fixed replica count instead of autoscaling, and the HTTP host/port.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray
import yaml
from ray import serve
from ray.serve.schema import ServeDeploySchema

from detector.config import Config
from detector.errors import ConfigError
from serve_ray.app import application

log = logging.getLogger("serve_ray")

DEFAULT_SERVE_CONFIG = Path("deploy/ray/serve_config.yaml")


def load_serve_config(path: Path) -> ServeDeploySchema:
    try:
        raw = yaml.safe_load(path.read_text())
        return ServeDeploySchema.model_validate(raw)
    except FileNotFoundError as exc:
        raise ConfigError(f"Serve config file not found: {path} (pass --serve-config)") from exc
    except Exception as exc:  # YAML or schema errors: say which file
        raise ConfigError(f"{path}: not a valid Ray Serve config: {exc}") from exc


def deployment_options(schema: ServeDeploySchema, replicas: int | None) -> dict[str, Any]:
    """The first application's deployment entry as `Deployment.options()` keywords; `replicas` fixes the count."""
    apps = schema.applications
    if len(apps) != 1 or len(apps[0].deployments) > 1:
        raise ConfigError("the Serve config must hold one application with (at most) one deployment entry")
    options: dict[str, Any] = {}
    if apps[0].deployments:
        options = apps[0].deployments[0].model_dump(exclude_unset=True)
        options.pop("name", None)
    if replicas is not None:
        options.pop("autoscaling_config", None)
        options["num_replicas"] = replicas
    return options


def deploy(
    config: Config,
    schema: ServeDeploySchema,
    replicas: int | None = None,
    name: str | None = None,
    route_prefix: str | None = None,
) -> None:
    """Start Serve's proxy on config's host/port (on a connected Ray) and deploy the app (`name` and `route_prefix`
    default to the file's); returns once every replica has loaded its model (or raises when the deployment fails)."""
    app = schema.applications[0]
    server = config.inference.server
    http = {**schema.http_options.model_dump(exclude_unset=True), "host": server.host, "port": server.port}
    serve.start(http_options=http, proxy_location=schema.proxy_location)
    serve.run(
        application(config, deployment_options(schema, replicas)),
        name=name or app.name,
        route_prefix=route_prefix or app.route_prefix or "/",
        blocking=False,
    )


@contextmanager
def ray_cluster(
    address: str | None, num_cpus: int | None = None, object_store_memory: int | None = None
) -> Iterator[None]:
    """Connect to (or, with address "local", start) a Ray cluster; shut Serve and Ray down after. A local cluster
    can be sized (`num_cpus`, `object_store_memory`); a running one has its own size."""
    local = address == "local"
    if local:
        # Serve gives its HTTP proxy 5 s to report ready, three times; on a small, busy machine it can take longer,
        # and the deploy then fails. The variables reach the cluster's processes, which start from this one.
        os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "30")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report to Ray's servers
    for attempt in (1, 2):
        try:
            ray.init(
                address=address,
                num_cpus=num_cpus if local else None,
                object_store_memory=object_store_memory if local else None,
                include_dashboard=False,
                log_to_driver=True,
            )
            break
        except Exception as exc:
            # Ray waits a fixed 30 s for a new node's processes to register (its metrics agent is the slow one);
            # on a small machine busy with other work that can run out. Once is bad luck; twice is a real problem.
            if not local or attempt == 2 or "timed out during startup" not in str(exc):
                raise
            log.warning("the local Ray node did not start in time (a busy machine?); trying once more")
            ray.shutdown()
    try:
        yield
    finally:
        try:
            shutdown_serve()
        finally:
            ray.shutdown()


def shutdown_serve() -> None:
    """Drain, then stop Serve. Applications are deleted first, while the proxies still run: each replica stops
    taking requests, finishes the ones it has (their responses still flow back through the proxy), then its
    lifespan drains the batcher and closes the model. `serve.shutdown()` alone stops the proxies at the same time
    and cuts the connections of requests still in flight. Safe to call when Serve is not running."""
    try:
        names = list(serve.status().applications)
    except Exception as exc:  # Serve never started (e.g. the deploy failed early): nothing to drain
        log.debug("no Serve applications to drain: %s", exc)
        names = []
    for name in names:
        log.info("draining application %s", name)
        serve.delete(name)  # blocks until its replicas have finished their requests and stopped
    serve.shutdown()


def serve_forever(
    config: Config,
    serve_config: Path = DEFAULT_SERVE_CONFIG,
    replicas: int | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
) -> None:
    """Blocking: deploy, then serve until SIGINT/SIGTERM, then drain and shut down."""
    schema = load_serve_config(serve_config)
    stop = threading.Event()
    with ray_cluster(address, num_cpus):
        # After ray.init, which installs its own SIGTERM handler: a signal ends the wait below, and the way out of
        # ray_cluster shuts Serve down gracefully.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        deploy(config, schema, replicas)
        server = config.inference.server
        log.info("serving on Ray Serve at http://%s:%d (docs at /docs)", server.host, server.port)
        stop.wait()
        log.info("shutting down: draining replicas")
