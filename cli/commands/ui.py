"""`detector ui`: the Gradio front end of a running `detector serve` (the `ui` extra)."""

from __future__ import annotations

import argparse

from cli.main import Commands, require
from detector.config import Config


def cmd_ui(args: argparse.Namespace, config: Config) -> None:
    require("gradio", "ui")
    app = require("ui.app", "ui")
    max_mb = config.inference.server.max_upload_mb
    app.launch(
        args.api_url or app.DEFAULT_API_URL,
        host=args.host,
        port=args.port,
        auth_file=args.auth_file,
        max_file_size=f"{max_mb:g}mb",
    )


def register(commands: Commands) -> None:
    p = commands.add("ui", cmd_ui, "web UI (Gradio) for a running `detector serve`")
    p.add_argument("--api-url", help="base URL of the detection API (default http://127.0.0.1:8000)")
    p.add_argument("--host", default="127.0.0.1", help="interface the UI listens on (0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--auth-file", help="user:password lines for the UI's login (default: $DETECTOR_UI_AUTH)")
