"""`detector train`, `detector evaluate`, `detector benchmark`: the DVC stages (see cli/stages.py; the `export`
stage is `detector export onnx`, in cli/commands/export.py with the other exports)."""

from __future__ import annotations

import argparse

from cli.main import Commands, require
from cli.output import print_json
from detector.config import Config


def cmd_train(args: argparse.Namespace, config: Config) -> None:
    require("ultralytics", "train")
    from cli.stages import stage_train

    print_json(stage_train(config))


def cmd_evaluate(args: argparse.Namespace, config: Config) -> None:
    from cli.stages import stage_evaluate

    print_json(stage_evaluate(config, register=not args.no_register))


def cmd_benchmark(args: argparse.Namespace, config: Config) -> None:
    from cli.stages import stage_benchmark

    status = stage_benchmark(config)
    if status:
        raise SystemExit(status)  # the benchmark printed why; DVC must see the stage fail


def register(commands: Commands) -> None:
    commands.add("train", cmd_train, "train with Ultralytics; the run is logged to MLflow")
    p = commands.add("evaluate", cmd_evaluate, "mAP of the exported ONNX through this project's runtime; registers it")
    p.add_argument("--no-register", action="store_true", help="do not touch the MLflow model registry")
    commands.add(
        "benchmark",
        cmd_benchmark,
        "quick latency of every backend on the exported model at its input size (DVC stage; `make bench`: full)",
    )
