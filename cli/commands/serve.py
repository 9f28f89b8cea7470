"""`detector serve` (the HTTP API) and `detector backends`."""

from __future__ import annotations

import argparse

from cli.main import Commands, require
from cli.output import print_json
from cli.wiring import engine_builder, model_resolver
from detector.config import BACKEND_CHOICES, Config


def cmd_serve(args: argparse.Namespace, config: Config) -> None:
    server = require("api.server", "serve")
    server.serve(
        config,
        host=args.host,
        port=args.port,
        model=args.model,
        backend=args.backend,
        engine_builder=engine_builder(),
        model_resolver=model_resolver(config),
    )


def cmd_backends(args: argparse.Namespace, config: Config) -> None:
    from detector.runtime import backends

    print_json({name: (why or "available") for name, why in backends.available().items()})


def register(commands: Commands) -> None:
    p = commands.add("serve", cmd_serve, "serve the HTTP API (FastAPI + uvicorn)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--model", help="ONNX file or MLflow registry URI, e.g. models:/yolo-detector@champion")
    p.add_argument("--backend", choices=BACKEND_CHOICES)
    commands.add("backends", cmd_backends, "list inference backends and whether each can run here")
