"""The Serve application: `build_app` is the `import_path` of deploy/ray/serve_config.yaml (Ray's `serve run` and
KubeRay call it with the file's `args`), and `detector serve --engine ray` builds the same application.

The project's configuration is resolved once, where the application is built (configs/ + `DETECTOR_*` environment
+ `overrides` + `model`), validated there (a typo fails the deploy, not every replica), and handed to each replica
as a plain dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field
from ray.serve import Application, Deployment

from detector.config import Config, load_config
from serve_ray.deployment import DetectorDeployment


class AppArgs(BaseModel):
    """The `args:` of an application in the Serve config file."""

    model_config = ConfigDict(extra="forbid")

    config_dir: str = "configs"
    overrides: list[str] = Field(default_factory=list)  # `section.key=value`, as on the `detector` command line
    model: str | None = None  # shortcut for inference.model_path=...
    config: dict[str, Any] | None = None  # an already resolved configuration (the CLI passes this)


def request_bounds(config: Config) -> dict[str, int]:
    """Ray's per-replica request bounds, derived from the app's own admission limit so that the app, not Ray, decides
    overload: a replica accepts more requests than the app admits (`queue_size` waiting + one batch per worker in
    inference), so the excess reaches the app and gets its quick 503 + Retry-After while /health keeps answering.
    Ray's own queue in front of the replicas (`max_queued_requests`, used only when every replica is at its bound)
    is kept as large as one replica's admission limit: bounded, and past it Ray too answers 503 + Retry-After."""
    server = config.inference.server
    admitted = server.queue_size + server.max_batch * (server.workers or 2)  # 0: per backend slot, TensorRT's 2
    return {"max_ongoing_requests": admitted + 8, "max_queued_requests": admitted}


def resolve_config(args: AppArgs) -> Config:
    if args.config is not None:
        return Config.model_validate(args.config)
    overrides = list(args.overrides)
    if args.model:
        overrides.append(f"inference.model_path={args.model}")
    return load_config(overrides, config_dir=args.config_dir)


def application(config: Config, options: Mapping[str, Any] | None = None) -> Application:
    """The deployment bound to `config`; `options` (a Serve config file's deployment entry) override the defaults."""
    server = config.inference.server
    # `@serve.deployment` turned the class into a Deployment; mypy does not apply class decorators' types.
    deployment = cast(Deployment, DetectorDeployment).options(
        **{
            **request_bounds(config),
            # Long enough for every admitted request to finish (each is bounded by request_timeout_s) before the
            # replica's lifespan drains and closes the model.
            "graceful_shutdown_timeout_s": server.request_timeout_s + 5,
            **(options or {}),
        }
    )
    app: Application = deployment.bind(config.model_dump())
    return app


def build_app(args: dict[str, Any]) -> Application:
    """Ray's application builder (`import_path: serve_ray.app:build_app`). Ray applies the config file's
    `deployments:` options on top of what this returns."""
    return application(resolve_config(AppArgs.model_validate(args)))
