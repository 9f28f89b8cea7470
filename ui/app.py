"""`detector ui`: a Gradio front end for `POST /predict` of a running `detector serve`.

Design choices:
  * HTTP only (httpx): the UI holds no model, so it is light and can sit in front of any replica of the API.
  * The service draws the result: one call to `POST /predict/annotated?include=json` returns the detections and
    the drawn JPEG, so the UI, the API and the CLI's videos all look alike (the UI draws nothing itself). The image
    is sent as PNG (Gradio has already applied EXIF orientation when it hands it to us).
  * Every failure (connection refused, timeout, 4xx `{"detail": ...}`, 503 with Retry-After) becomes a readable
    message in the page instead of a traceback.
  * Safe to expose (issue 21): `auth=` (users from DETECTOR_UI_AUTH="user:password,..." or `--auth-file` with one
    `user:password` a line), an upload limit (`max_file_size`, 10 MB like the API's `max_upload_mb`), Gradio's
    cached uploads deleted after an hour, the API key for the service from DETECTOR_API_KEY, and a loud warning
    when it listens beyond loopback without users.
  * Offline: analytics off, no share links, no server-side rendering (no Node process), and the default theme's fonts
    are `LocalFont`s that Gradio serves itself, so the page makes no request outside the UI's own origin (the
    browser test checks this).

Gradio is imported inside the functions that need it: `detector --help` must work without the `ui` extra.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from PIL import Image, UnidentifiedImageError

if TYPE_CHECKING:
    import gradio as gr

EXAMPLES_DIR = Path(__file__).parent / "examples"
DEFAULT_API_URL = "http://127.0.0.1:8000"
# The service's own defaults (configs/inference.yaml); the UI cannot read the config without importing `detector`.
DEFAULT_CONF = 0.25
DEFAULT_IOU = 0.7
DEFAULT_MAX_FILE_SIZE = "10mb"  # the API's default max_upload_mb
AUTH_ENV = "DETECTOR_UI_AUTH"  # "user:password,user2:password2"
API_KEY_ENV = "DETECTOR_API_KEY"  # sent to the service as X-API-Key when its auth is on
CACHE_CLEANUP = (3600, 3600)  # Gradio's cached uploads: checked every hour, deleted when older than an hour


class ApiError(Exception):
    """A failed call to the detection API, with a message meant for the person using the UI."""


def error_message(exc: Exception, api_url: str) -> str:
    """A one-paragraph explanation of why a call to the API failed."""
    if isinstance(exc, httpx.ConnectError):
        return f"Cannot reach the detection API at {api_url} (connection refused). Is `detector serve` running there?"
    if isinstance(exc, httpx.TimeoutException):
        return f"The detection API at {api_url} did not answer in time ({type(exc).__name__}). Try again."
    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        detail = _detail(response)
        if response.status_code == 503:
            retry = response.headers.get("retry-after")
            hint = f" Retry after {retry} s." if retry else " Try again in a moment."
            return f"The service is busy or not ready (503): {detail}.{hint}"
        if 400 <= response.status_code < 500:
            return f"The API refused the request ({response.status_code}): {detail}"
        return f"The API failed ({response.status_code}): {detail}"
    if isinstance(exc, httpx.HTTPError):
        return f"HTTP error talking to {api_url}: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _detail(response: httpx.Response) -> str:
    """The `detail` of an error body (the API's contract), else the body's first 300 characters."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        # FastAPI's own validation errors carry a list of {loc, msg}; show the messages.
        if isinstance(detail, list):
            return "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
        return str(detail)
    return json.dumps(body)[:300]


def encode_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def predict(client: httpx.Client, image: Image.Image, conf: float, iou: float) -> dict[str, Any]:
    """POST the image to /predict/annotated?include=json: the `/predict` JSON plus `annotated_image` (the drawn
    JPEG, base64) on 200; ApiError with a readable message otherwise."""
    try:
        response = client.post(
            "/predict/annotated",
            params={"conf": conf, "iou": iou, "include": "json"},
            files={"file": ("image.png", encode_png(image), "image/png")},
        )
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise ApiError(error_message(exc, str(client.base_url))) from exc
    try:
        payload: dict[str, Any] = response.json()
    except ValueError as exc:
        raise ApiError(
            f"{client.base_url} answered {response.status_code} but not with JSON: does --api-url point at "
            "`detector serve`?"
        ) from exc
    return payload


def model_summary(client: httpx.Client) -> str:
    """One Markdown line about the served model (or why it is unavailable), shown at the top of the page."""
    try:
        response = client.get("/model")
        response.raise_for_status()
        info = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        return f"**API:** {client.base_url} - {error_message(exc, str(client.base_url))}"
    names = ", ".join(str(v) for v in info.get("names", {}).values())
    return (
        f"**API:** {client.base_url} - model `{info.get('version', '?')}` on `{info.get('backend', '?')}` "
        f"({info.get('device', '?')}, input {info.get('input_size')}); classes: {names}"
    )


def annotated_image(payload: dict[str, Any]) -> Image.Image:
    """The drawn image the service sent back (`annotated_image.base64`, a JPEG)."""
    try:
        data = base64.b64decode(payload["annotated_image"]["base64"], validate=True)
        out = Image.open(io.BytesIO(data))
        out.load()
    except (KeyError, TypeError, binascii.Error, UnidentifiedImageError, OSError) as exc:
        raise ApiError(
            "The API answered without a drawn image: is it a `detector serve` with /predict/annotated?"
        ) from exc
    return out.convert("RGB")


def timings_rows(timings_ms: dict[str, float]) -> list[list[Any]]:
    """[[stage, milliseconds], ...] in the order the API reports them, `total` last."""
    rows = [[stage, round(float(ms), 2)] for stage, ms in timings_ms.items() if stage != "total"]
    rows.append(["total", round(float(timings_ms["total"]), 2)])  # the API always reports it
    return rows


def summary(payload: dict[str, Any]) -> str:
    """A short Markdown status line for a successful prediction."""
    dets = payload["detections"]
    counts: dict[str, int] = {}
    for det in dets:
        counts[det["class_name"]] = counts.get(det["class_name"], 0) + 1
    found = ", ".join(f"{n} x {name}" for name, n in sorted(counts.items())) or "nothing above the threshold"
    return f"Found {len(dets)} object(s) in {payload['timings_ms']['total']:.1f} ms: {found}."


Outputs = tuple[Image.Image | None, dict[str, Any] | None, list[list[Any]], str]


def make_handler(client: httpx.Client) -> Callable[[Image.Image | None, float, float], Outputs]:
    """The button's callback: (image, conf, iou) -> (annotated image, JSON, timings rows, status Markdown)."""

    def handle(image: Image.Image | None, conf: float, iou: float) -> Outputs:
        if image is None:
            return None, None, [], "Upload an image or pick an example first."
        try:
            payload = predict(client, image, conf, iou)
            drawn = annotated_image(payload)
        except ApiError as exc:
            return None, None, [], f"**Error:** {exc}"
        shown = {k: v for k, v in payload.items() if k != "annotated_image"}  # the JSON panel: no base64 blob
        return drawn, shown, timings_rows(payload["timings_ms"]), summary(payload)

    return handle


def build_app(api_url: str, timeout: float = 30.0, transport: httpx.BaseTransport | None = None) -> gr.Blocks:
    """The Gradio page, bound to one API base URL. `transport` lets tests swap the network for a fake."""
    import gradio as gr

    api_key = os.environ.get(API_KEY_ENV, "")
    headers = {"X-API-Key": api_key} if api_key else {}
    client = httpx.Client(base_url=api_url, timeout=timeout, transport=transport, headers=headers)
    handle = make_handler(client)
    examples = sorted(str(p) for p in EXAMPLES_DIR.glob("*.jpg"))
    app = gr.Blocks(title="YOLO detector", analytics_enabled=False, delete_cache=CACHE_CLEANUP)
    with app:
        gr.Markdown("# YOLO detector\nUpload an image (or pick an example), then press **Detect**.")
        model_info = gr.Markdown(elem_id="model-info")
        with gr.Row():
            with gr.Column():
                image_in = gr.Image(type="pil", label="Image", sources=["upload", "clipboard"], elem_id="image-in")
                conf = gr.Slider(0.0, 1.0, value=DEFAULT_CONF, step=0.01, label="Confidence threshold")
                iou = gr.Slider(0.0, 1.0, value=DEFAULT_IOU, step=0.01, label="NMS IoU threshold")
                button = gr.Button("Detect", variant="primary", elem_id="detect")
                # The examples ship inside the package (a test checks it), so the list is never empty.
                gr.Examples(examples=examples, inputs=[image_in], label="Examples (generated shapes)")
            with gr.Column():
                image_out = gr.Image(type="pil", label="Detections", format="png", elem_id="image-out")
                status = gr.Markdown(elem_id="status")
                timings = gr.Dataframe(
                    headers=["stage", "ms"], datatype=["str", "number"], label="Timings (ms)", elem_id="timings"
                )
        response_json = gr.JSON(label="Response JSON", elem_id="response-json")
        button.click(handle, inputs=[image_in, conf, iou], outputs=[image_out, response_json, timings, status])
        app.load(lambda: model_summary(client), outputs=[model_info])
    return app


def parse_users(text: str) -> list[tuple[str, str]]:
    """`user:password` pairs, separated by commas or new lines; ValueError for a malformed one."""
    users = []
    for item in text.replace("\n", ",").split(","):
        item = item.strip()
        if not item or item.startswith("#"):
            continue
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            raise ValueError("UI users must be written user:password (one per line or comma-separated)")
        users.append((user, password))
    return users


def ui_users(auth_file: str | None = None) -> list[tuple[str, str]]:
    """The UI's users: from `auth_file`, else from DETECTOR_UI_AUTH; [] for none."""
    if auth_file:
        return parse_users(Path(auth_file).read_text())
    return parse_users(os.environ.get(AUTH_ENV, ""))


def launch(
    api_url: str,
    host: str = "127.0.0.1",
    port: int = 7860,
    auth_file: str | None = None,
    max_file_size: str = DEFAULT_MAX_FILE_SIZE,
    block: bool = True,
) -> gr.Blocks:
    """Serve the UI (`block=False`: in a background thread, for tests; `app.close()` stops it)."""
    # Before Gradio is imported: it reads this at import time (analytics and the version check call home).
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    users = ui_users(auth_file)
    if not users and host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"WARNING: the UI listens on {host} with no users: anyone who can reach port {port} can use it. "
            f"Set {AUTH_ENV}=user:password or pass --auth-file.",
            flush=True,
        )
    app = build_app(api_url)
    # ssr_mode=False: no Node.js server; share=False: no tunnel to gradio.live.
    app.launch(
        server_name=host,
        server_port=port,
        share=False,
        ssr_mode=False,
        show_error=True,
        auth=users or None,
        max_file_size=max_file_size,
        prevent_thread_lock=not block,
    )
    return app


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m ui.app --api-url ...`: the same as `detector ui`, without the CLI's config loading."""
    parser = argparse.ArgumentParser(prog="python -m ui.app", description="web UI for a running `detector serve`")
    parser.add_argument("--api-url", default=DEFAULT_API_URL)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--auth-file", help=f"user:password lines (default: the {AUTH_ENV} variable)")
    parser.add_argument("--max-file-size", default=DEFAULT_MAX_FILE_SIZE, help="largest upload, e.g. 10mb")
    args = parser.parse_args(argv)
    launch(args.api_url, args.host, args.port, args.auth_file, args.max_file_size)


if __name__ == "__main__":
    main()
