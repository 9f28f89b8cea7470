"""`detector data generate|validate`."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.main import Commands
from cli.output import print_json
from detector.config import Config


def cmd_generate(args: argparse.Namespace, config: Config) -> None:
    from cli.stages import stage_data

    print_json(stage_data(config))


def cmd_validate(args: argparse.Namespace, config: Config) -> None:
    from detector.data import check_dataset

    root = Path(args.path) if args.path else config.data.dataset_dir
    names = check_dataset(root)
    print(f"{root}: OK ({len(names)} classes: {', '.join(names.values())})")


def register(commands: Commands) -> None:
    commands.group("data", "generate or validate datasets")
    commands.add("generate", cmd_generate, "generate the configured dataset version under data/<version>/", "data")
    p = commands.add(
        "validate", cmd_validate, "check a YOLO dataset; every problem is reported with file and line", "data"
    )
    p.add_argument("--path", help="dataset folder (default: the configured one)")
