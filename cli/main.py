"""`detector` command line: data, train, export, evaluate, predict, serve, ui.

Every command takes trailing `section.key=value` overrides of the configuration (configs/*.yaml).
Errors the user can fix print one clear message and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from detector.config import Config, load_config
from detector.errors import DetectorError, MissingDependencyError

Handler = Callable[[argparse.Namespace, Config], None]

# Which extra brings which import, and the make target that installs it (Makefile). One table, so every command
# that needs an extra says the same thing.
EXTRAS: dict[str, tuple[str, str]] = {
    "serve": ("serve", "make install-serve"),
    "train": ("train", "make install-train"),
    "openvino": ("openvino", "make install-serve"),
    "ui": ("ui", "make install-dev"),
    "ray": ("ray", "make install-ray"),
}


def require(module: str, extra: str) -> ModuleType:
    """Import `module` for a command; when a package of the `extra` is missing, say what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        name, target = EXTRAS[extra]
        raise MissingDependencyError(
            f"this command needs the `{name}` extra, which is not installed ({exc}); install it with `{target}` "
            f"(or `uv sync --inexact --extra {name}`)"
        ) from exc


class Commands:
    """Registers subcommands: `add(name, handler, help)` at the top, or inside a group (`detector data ...`)."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self._sub = parser.add_subparsers(dest="command", required=True)
        self._groups: dict[str, Any] = {}

    def group(self, name: str, help_: str) -> None:
        self._groups[name] = self._sub.add_parser(name, help=help_, description=help_).add_subparsers(
            dest=f"{name}_cmd", required=True
        )

    def add(
        self, name: str, handler: Handler, help_: str, group: str | None = None, positional_overrides: bool = True
    ) -> argparse.ArgumentParser:
        """A subcommand taking `--set key=value` config overrides, and trailing `key=value` ones too unless it has
        positionals of its own (a user who learnt one spelling on one command finds it on every other)."""
        parent = self._groups[group] if group else self._sub
        p: argparse.ArgumentParser = parent.add_parser(name, help=help_, description=help_)
        if positional_overrides:
            p.add_argument("overrides", nargs="*", default=[], help="config overrides, e.g. train.epochs=5")
        p.add_argument("--set", dest="set_overrides", action="append", default=[], help="config override key=value")
        p.set_defaults(handler=handler)
        return p


def build_parser() -> argparse.ArgumentParser:
    from cli.commands import MODULES

    parser = argparse.ArgumentParser(prog="detector", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--config-dir", default="configs", help="folder with data/train/export/inference.yaml")
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = Commands(parser)
    for module in MODULES:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,  # stdout carries the JSON results
    )
    try:
        overrides = [*getattr(args, "overrides", []), *getattr(args, "set_overrides", [])]
        config = load_config(overrides, config_dir=args.config_dir)
        args.handler(args, config)
    except DetectorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
