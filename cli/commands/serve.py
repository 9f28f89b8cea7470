"""`detector serve` (the HTTP API, on uvicorn or on Ray Serve) and `detector backends`."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.main import Commands, require
from cli.output import print_json
from cli.wiring import engine_builder, model_resolver
from detector.config import BACKEND_CHOICES, Config
from detector.errors import ConfigError, ModelLoadError


def cmd_serve(args: argparse.Namespace, config: Config) -> None:
    server = require("api.server", "serve")
    config = server.effective_config(config, args.host, args.port, args.model, args.backend)
    if args.engine == "uvicorn":
        if args.replicas is not None:
            raise ConfigError("--replicas needs --engine ray (one uvicorn process serves one model)")
        server.serve(config, engine_builder=engine_builder(), model_resolver=model_resolver(config))
        return
    runner = require("serve_ray.runner", "ray")  # Ray is imported only here: serving without it is unchanged
    problem = require("api.service", "serve").model_file_problem(config.inference.model_path)
    if problem:
        raise ModelLoadError(problem)
    runner.serve_forever(
        config,
        serve_config=args.serve_config or runner.DEFAULT_SERVE_CONFIG,
        replicas=args.replicas,
        address=args.ray_address,
    )


def _replicas(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def cmd_backends(args: argparse.Namespace, config: Config) -> None:
    from detector.runtime import backends

    print_json({name: (why or "available") for name, why in backends.available().items()})


def register(commands: Commands) -> None:
    p = commands.add("serve", cmd_serve, "serve the HTTP API (FastAPI + uvicorn)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--model", help="ONNX file or MLflow registry URI, e.g. models:/yolo-detector@champion")
    p.add_argument("--backend", choices=BACKEND_CHOICES)
    p.add_argument(
        "--engine",
        choices=("uvicorn", "ray"),
        default="uvicorn",
        help="uvicorn: one process (default); ray: replicas on Ray Serve (needs the `ray` extra)",
    )
    p.add_argument(
        "--replicas", type=_replicas, help="Ray: a fixed number of replicas (default: the Serve config's autoscaling)"
    )
    p.add_argument("--serve-config", type=Path, help="Ray: Serve config file (default: deploy/ray/serve_config.yaml)")
    p.add_argument(
        "--ray-address",
        default="local",
        help="Ray: `local` starts a cluster on this machine (default); `auto` or ray://... joins a running one",
    )
    commands.add("backends", cmd_backends, "list inference backends and whether each can run here")
