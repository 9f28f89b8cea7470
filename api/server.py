"""`detector serve`: run the app under uvicorn. CLI arguments override the configuration.

Graceful shutdown (SIGINT/SIGTERM): uvicorn stops accepting connections and waits for in-flight requests (up to
the request timeout), then the app's lifespan drains the batcher and closes the model.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

import uvicorn

from api.admission.auth import load_keys
from api.admission.http_protocol import bounded_protocol
from api.app import create_app
from api.service import model_file_problem
from detector.config import Config
from detector.errors import BackendFailedError, ConfigError, ModelLoadError
from detector.runtime.engines import EngineBuilder
from detector.runtime.model_source import ModelResolver, is_registry_uri

log = logging.getLogger("api")


def effective_config(
    config: Config,
    host: str | None = None,
    port: int | None = None,
    model: str | None = None,
    backend: str | None = None,
) -> Config:
    """`config` with the CLI's overrides applied (None: keep the configured value); re-validated."""
    inf = config.inference
    data = config.model_dump()
    data["inference"]["model_path"] = model or inf.model_path
    data["inference"]["backend"] = backend or inf.backend
    data["inference"]["server"]["host"] = host or inf.server.host
    data["inference"]["server"]["port"] = port if port is not None else inf.server.port
    return Config.model_validate(data)


def serve(
    config: Config, engine_builder: EngineBuilder | None = None, model_resolver: ModelResolver | None = None
) -> None:
    """Run the service for `config` (with the CLI's overrides applied: `effective_config`); `engine_builder` is
    handed to the TensorRT backend and `model_resolver` resolves `models:/name@alias` (see `api.app.create_app`)."""
    inf = config.inference
    if is_registry_uri(inf.model_path):
        if model_resolver is None:
            raise ModelLoadError(f"{inf.model_path}: serving from the MLflow registry needs a registry resolver")
        # Fail the start now (exit 2 with the reason) when the alias is missing or the registry is unreachable;
        # the lifespan's load then finds the download in the cache.
        model_resolver(inf.model_path)
    else:
        problem = model_file_problem(inf.model_path)
        if problem:
            raise ModelLoadError(problem)
    check_exposure(config)
    failures: list[str] = []
    http: uvicorn.Server | None = None

    def fatal(reason: str) -> None:
        # The backend broke beyond repair (api/service.py): drain like SIGTERM, then exit non-zero (below).
        failures.append(reason)
        if http is not None:
            http.should_exit = True

    app = create_app(
        config, engine_builder=engine_builder, model_resolver=model_resolver, on_fatal=fatal, freeze_when_loaded=True
    )
    server = inf.server
    scheme = "https" if server.tls_certfile else "http"
    log.info("serving %s on %s://%s:%d (docs at /docs)", inf.model_path, scheme, server.host, server.port)
    raise_open_file_limit(server.max_connections)
    # log_config=None: keep the CLI's logging
    http = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(config), log_config=None))
    http.run()
    if failures:  # the CLI prints it and exits with status 2: the orchestrator restarts the process
        raise BackendFailedError(f"stopped serving: {failures[0]}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: only "localhost" is known to stay on this machine
        return False


def check_exposure(config: Config) -> None:
    """On a non-loopback address with no API key configured: refuse to start when `auth.require_on_network`, else
    say loudly (once per start) that anyone who can reach the port may use every endpoint."""
    server = config.inference.server
    if is_loopback(server.host) or load_keys(server.auth):
        return
    if server.auth.require_on_network:
        raise ConfigError(
            f"inference.server.host is {server.host} (reachable from the network) and no API key is configured, "
            "while inference.server.auth.require_on_network is true: add keys (python -m api.admission.auth new NAME; "
            "inference.server.auth.keys or keys_file) or bind to 127.0.0.1"
        )
    banner = "!" * 100
    log.warning(
        "\n%s\nNO AUTHENTICATION: listening on %s:%d with no API key configured. Anyone who can reach this port can"
        " run inference and read /metrics and /docs.\nConfigure keys (inference.server.auth, see"
        " docs/_pending/security.md), or set inference.server.auth.require_on_network=true to refuse this.\n%s",
        banner,
        server.host,
        server.port,
        banner,
    )


def raise_open_file_limit(max_connections: int) -> int:
    """Raise the soft limit on open files to fit `max_connections` sockets plus the server's own files (model,
    uploads, logs: 256 kept aside), up to the hard limit; warn when even that is too small (then connections past
    it fail at accept instead of being handled by the limits in api/admission/http_protocol.py). Returns the soft
    limit."""
    try:
        import resource
    except ImportError:  # not on Windows
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max_connections + 256
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return int(soft)
    new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    except (ValueError, OSError):
        pass
    if soft < needed:
        log.warning(
            "the open-file limit (%d) is below max_connections + 256 (%d): raise it (ulimit -n, docker --ulimit nofile)"
            " or lower inference.server.max_connections",
            soft,
            needed,
        )
    return int(soft)


def uvicorn_options(config: Config) -> dict[str, Any]:
    """The HTTP server's limits, set on purpose rather than left at uvicorn's defaults.

    httptools (C parser) with a bound on the request line plus headers (`max_header_bytes`; a bigger one gets 400 and
    the connection closes): see api/admission/http_protocol.py for why not h11. uvloop is uvicorn's default where
    installed.
    """
    server = config.inference.server
    # TLS is uvicorn's own (ssl_certfile/ssl_keyfile); unset: plain HTTP (e.g. behind a TLS-terminating proxy).
    tls: dict[str, Any] = {}
    if server.tls_certfile:
        tls = {"ssl_certfile": server.tls_certfile, "ssl_keyfile": server.tls_keyfile or None}
    return {
        "host": server.host,
        "port": server.port,
        "http": bounded_protocol(
            server.max_header_bytes, server.head_timeout_s, server.max_connections, server.max_connections_per_client
        ),
        "timeout_keep_alive": max(1, round(server.keep_alive_s)),
        # No `limit_concurrency`: uvicorn's counts idle sockets too (a client holding 1,023 made every request 503);
        # the protocol bounds requests in progress and open connections apart.
        "timeout_graceful_shutdown": int(server.request_timeout_s) + 1,
        "access_log": False,  # /metrics counts requests; per-request log lines cost throughput
        "server_header": False,
        **tls,
    }
