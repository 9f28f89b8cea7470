"""`detector ui`: the Gradio front end of a running `detector serve` (the `ui` extra)."""

from __future__ import annotations

import argparse

from cli.main import Commands, require
from detector.config import Config


def cmd_ui(args: argparse.Namespace, config: Config) -> None:
    require("gradio", "ui")
    app = require("ui.app", "ui")
    app.launch(args.api_url or app.DEFAULT_API_URL, host=args.host, port=args.port)


def register(commands: Commands) -> None:
    p = commands.add("ui", cmd_ui, "web UI (Gradio) for a running `detector serve`")
    p.add_argument("--api-url", help="base URL of the detection API (default http://127.0.0.1:8000)")
    p.add_argument("--host", default="127.0.0.1", help="interface the UI listens on (0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=7860)
