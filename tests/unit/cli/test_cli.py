"""The `detector` command: every subcommand is registered whatever is installed, and a missing extra says what to
install instead of hiding the command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from cli.main import build_parser, main
from detector.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]

COMMANDS = [
    ["data", "generate"],
    ["data", "validate"],
    ["train"],
    ["export", "onnx"],
    ["export", "engine"],
    ["export", "triton", "--out", "repo"],
    ["evaluate"],
    ["registry", "promote", "--version", "3"],
    ["predict", "x.jpg"],
    ["serve"],
    ["backends"],
    ["ui"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a))
def test_every_command_is_registered(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert callable(args.handler)


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a))
def test_every_command_takes_set_overrides(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: `detector predict --set k=v` but `detector serve k=v` only (`--set` there: "unrecognized arguments").
    seen: list[list[str]] = []

    def load_config(overrides: list[str], config_dir: Any = None) -> None:
        seen.append(overrides)
        raise ConfigError("stop before the command runs")

    monkeypatch.setattr("cli.main.load_config", load_config)
    assert main([*argv, "--set", "inference.conf=0.5", "--set", "inference.iou=0.6"]) == 2
    assert seen == [["inference.conf=0.5", "inference.iou=0.6"]]


def test_ui_flags_parse() -> None:
    args = build_parser().parse_args(["ui", "--api-url", "http://x:1", "--port", "9999"])
    assert (args.api_url, args.host, args.port) == ("http://x:1", "127.0.0.1", 9999)


@pytest.mark.parametrize(
    ("argv", "missing", "hint"),
    [
        (["ui"], "gradio", "make install-dev"),
        (["serve"], "uvicorn", "make install-serve"),
        (["train"], "ultralytics", "make install-train"),
    ],
)
def test_missing_extra_prints_what_to_install(
    argv: list[str], missing: str, hint: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # What `import <missing>` raises when the package is not installed. The command must still exist (parse) and
    # fail with exit code 2 and the install hint, not a traceback or "invalid choice".
    monkeypatch.setitem(sys.modules, missing, None)
    for module in [m for m in sys.modules if m.startswith(("api.server", "ui.app"))]:
        monkeypatch.delitem(sys.modules, module)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert hint in err and "extra" in err


def test_serve_wires_the_engine_builder() -> None:
    from cli.wiring import engine_builder
    from export.tensorrt import build_engine

    assert engine_builder() is build_engine


def test_without_the_build_code_no_engine_builder_is_injected(monkeypatch: pytest.MonkeyPatch) -> None:
    from export.builders import engine_builder

    monkeypatch.setitem(sys.modules, "export.tensorrt", None)  # an image without the build code: cached engines only
    assert engine_builder() is None


def test_export_engine_is_configured_by_the_export_engine_keys_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One way to set each engine option: the `export.engine.*` overrides, checked once by the config."""
    import cli.commands.export as export_command

    class Resolved(Exception):
        """Stops the command where it would build: the spec it would build with is all this test needs."""

    seen: list[tuple[Any, int]] = []

    def resolve(path: Path, spec: Any, device: int, build: Any, force: bool) -> Any:
        seen.append((spec, device))
        raise Resolved

    monkeypatch.setattr(export_command, "resolve_engine", resolve)
    base = ["--config-dir", str(REPO / "configs"), "export", "engine", "--onnx", "m.onnx", "--device", "1"]
    overrides = ["export.engine.precision=fp32", "export.engine.max_batch=16", "export.engine.input_dtype=uint8"]
    with pytest.raises(Resolved):
        main([*base, *overrides])
    spec, device = seen[0]
    assert (spec.precision, spec.profile.max_batch, spec.input_dtype, device) == ("fp32", 16, "uint8", 1)
    assert main([*base, "export.engine.precision=int4"]) == 2  # refused by the config, before anything runs
    assert "export.engine.precision" in capsys.readouterr().err and len(seen) == 1
    for flag in (
        "--precision",
        "--workspace-gb",
        "--min-batch",
        "--opt-batch",
        "--max-batch",
        "--input-dtype",
        "--engine-dir",
    ):
        with pytest.raises(SystemExit):  # the flags that duplicated the keys are gone
            build_parser().parse_args(["export", "engine", flag, "1"])
