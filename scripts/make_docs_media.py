"""Screenshots and the demo video under docs/, taken from the real running apps.

Run through scripts/make_docs_media.sh (it prepares a small tools venv with Playwright and Pillow). Each piece is
skipped, with a message, when what it needs is missing, and everything is overwritten on the next run:

  docs/images/mlflow_runs.png      MLflow UI: the experiment's runs (mlflow ui on ./mlflow.db)
  docs/images/mlflow_compare.png   MLflow UI: the runs compared (parameters and metrics side by side)
  docs/images/swagger.png          Swagger UI at /docs of the running service (`detector serve`)
  docs/images/prediction.jpg       an image with the boxes of a real POST /predict response drawn on it
  docs/demo.mp4                    1-2 min: the service starting, /health, /docs, a prediction, the experiments

Nothing is staged or invented: the terminal slides of the video show the commands that this script ran and the
output they printed (service log, HTTP responses), trimmed to fit the frame.

Browsers: Playwright drives the system Chromium (`/usr/bin/chromium`, headless); its own browser download is not
used. The service serves Swagger UI's assets itself (api/docs.py), so /docs renders without internet access.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
IMAGES = DOCS / "images"
VIDEO_SIZE = (1280, 720)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45"]


def log(message: str) -> None:
    print(f"docs-media: {message}", flush=True)


# --- processes and HTTP ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run `cmd` (stdout+stderr to `log_path`) for the duration of the block, in its own process group.

    The whole group is stopped afterwards (SIGTERM, then SIGKILL): `mlflow ui` starts uvicorn workers and job
    consumers that would otherwise outlive it.
    """
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group, if any
            proc.wait()


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    return False


def http_json(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def multipart(field_name: str, path: Path) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    kind = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; filename="{path.name}"\r\n'
            f"Content-Type: {kind}\r\n\r\n"
        ).encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


# --- drawing ---------------------------------------------------------------------------------------------------------


def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """DejaVu Sans Mono when the system has it (Debian: fonts-dejavu-core), else Pillow's bundled default font."""
    for candidate in ("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf", "DejaVuSansMono.ttf"):
        with contextlib.suppress(OSError):
            return ImageFont.truetype(candidate, size)
    return ImageFont.load_default(size)


def draw_prediction(image_path: Path, response: dict[str, Any], out: Path, scale: int = 3) -> None:
    """The image (upscaled, so small inputs stay readable) with each detection's box, class and confidence."""
    image = Image.open(image_path).convert("RGB")
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(image)
    label_font = font(8 * scale)
    for det in response["detections"]:
        box = det["box"]
        xyxy = [box["x1"] * scale, box["y1"] * scale, box["x2"] * scale, box["y2"] * scale]
        colour = PALETTE[det["class_id"] % len(PALETTE)]
        draw.rectangle(xyxy, outline=colour, width=max(2, scale))
        text = f"{det['class_name']} {det['confidence']:.2f}"
        left, top, right, bottom = draw.textbbox((xyxy[0], xyxy[1]), text, font=label_font)
        y = xyxy[1] - (bottom - top) - 4 if xyxy[1] - (bottom - top) - 4 > 0 else xyxy[1]
        draw.rectangle([xyxy[0], y, xyxy[0] + (right - left) + 6, y + (bottom - top) + 4], fill=colour)
        draw.text((xyxy[0] + 3, y + 1), text, fill="white", font=label_font)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, quality=92)


def terminal_frames(lines: list[str], title: str, out_dir: Path, stem: str, steps: int = 4) -> list[Path]:
    """A terminal window showing `lines`, revealed in `steps` frames (the last frame shows everything)."""
    width, height = VIDEO_SIZE
    text_font, title_font = font(18), font(22)
    line_height = 24
    max_lines = (height - 110) // line_height
    wrapped: list[str] = []
    for line in lines:
        wrapped += textwrap.wrap(line, 108, subsequent_indent="  ") or [""]
    if len(wrapped) > max_lines:
        wrapped = [*wrapped[: max_lines - 1], "  ..."]
    frames = []
    for step in range(1, steps + 1):
        shown = wrapped[: max(1, round(len(wrapped) * step / steps))]
        image = Image.new("RGB", VIDEO_SIZE, "#1e1e1e")
        draw = ImageDraw.Draw(image)
        draw.rectangle([0, 0, width, 48], fill="#333333")
        for i, colour in enumerate(("#ff5f56", "#ffbd2e", "#27c93f")):
            draw.ellipse([18 + i * 26, 16, 34 + i * 26, 32], fill=colour)
        draw.text((110, 12), title, fill="#dddddd", font=title_font)
        for i, line in enumerate(shown):
            colour = "#8ae234" if line.startswith("$ ") else "#e0e0e0"
            draw.text((24, 66 + i * line_height), line, fill=colour, font=text_font)
        path = out_dir / f"{stem}_{step}.png"
        image.save(path)
        frames.append(path)
    return frames


def caption_frame(image_path: Path, caption: str, out: Path) -> Path:
    """A screenshot fitted into the video frame with a caption bar at the bottom."""
    width, height = VIDEO_SIZE
    canvas = Image.new("RGB", VIDEO_SIZE, "#111111")
    shot = Image.open(image_path).convert("RGB")
    shot.thumbnail((width, height - 70), Image.Resampling.LANCZOS)
    canvas.paste(shot, ((width - shot.width) // 2, (height - 70 - shot.height) // 2))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([0, height - 70, width, height], fill="#222222")
    draw.text((24, height - 52), caption, fill="white", font=font(24))
    canvas.save(out)
    return out


def title_frame(lines: list[str], out: Path) -> Path:
    canvas = Image.new("RGB", VIDEO_SIZE, "#0d1b2a")
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((80, 240 + i * 56), line, fill="white" if i == 0 else "#9fb3c8", font=font(40 if i == 0 else 26))
    canvas.save(out)
    return out


# --- screenshots -----------------------------------------------------------------------------------------------------


@dataclass
class Browser:
    chromium: str
    playwright: Any = None
    browser: Any = None

    def __enter__(self) -> Browser:
        from playwright.sync_api import sync_playwright

        self.playwright = sync_playwright().start()
        self.browser = self.playwright.chromium.launch(executable_path=self.chromium, headless=True, args=CHROMIUM_ARGS)
        return self

    def __exit__(self, *exc: object) -> None:
        self.browser.close()
        self.playwright.stop()

    def screenshot(
        self,
        url: str,
        out: Path,
        wait_for: str | None = None,
        settle_s: float = 2.0,
        click: str | None = None,
        close: tuple[str, ...] = (),
    ) -> None:
        page = self.browser.new_page(viewport={"width": 1400, "height": 900}, device_scale_factor=1)
        page.goto(url, wait_until="load", timeout=60_000)
        if wait_for:
            page.wait_for_selector(wait_for, timeout=90_000)
        for selector in close:  # side panels that would hide the content
            with contextlib.suppress(Exception):
                page.locator(selector).first.click(timeout=3_000)
        if click:
            page.click(click)
        time.sleep(settle_s)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        page.close()


# --- the pieces ------------------------------------------------------------------------------------------------------


@dataclass
class Media:
    work: Path
    slides: list[tuple[Path, float]] = field(default_factory=list)  # (frame, seconds on screen)

    def add(self, frame: Path, seconds: float) -> None:
        self.slides.append((frame, seconds))

    def add_terminal(self, lines: list[str], title: str, stem: str, seconds: float, steps: int = 4) -> None:
        frames = terminal_frames(lines, title, self.work, stem, steps)
        for frame in frames[:-1]:
            self.add(frame, 1.0)
        self.add(frames[-1], max(1.0, seconds - (len(frames) - 1)))


def pick_image(requested: Path | None) -> Path | None:
    if requested:
        return requested
    for version in ("v1", "v2"):
        candidates = sorted((REPO / "data" / version / "images" / "test").glob("*.jpg"))[:50]
        if candidates:
            # The busiest of the first test images (most labelled objects) makes the clearest demo.
            def objects(image: Path) -> int:
                label = image.parents[2] / "labels" / "test" / f"{image.stem}.txt"
                return len(label.read_text().splitlines()) if label.is_file() else 0

            return max(candidates, key=objects)
    return None


def service_part(args: argparse.Namespace, media: Media, browser: Browser | None) -> None:
    detector = args.project_bin / "detector"
    model = REPO / "models" / "model.onnx"
    if not (REPO / "api" / "server.py").is_file() or not detector.exists():
        log(f"skipping the service: no api/server.py or no {detector}")
        return
    if not model.is_file():
        log("skipping the service: models/model.onnx not found (run `make pipeline` first)")
        return
    image = pick_image(args.image)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve_cmd = [str(detector), "serve", "--host", "127.0.0.1", "--port", str(port)]
    log_path = media.work / "serve.log"
    started = time.monotonic()
    with running(serve_cmd, log_path) as proc:
        if not wait_http(f"{base}/health", proc, timeout=180):
            log(f"the service did not become healthy; its log:\n{log_path.read_text()[-3000:]}")
            return
        startup_s = time.monotonic() - started
        health = http_json(f"{base}/health")
        model_info = http_json(f"{base}/model")
        shown_cmd = "$ detector serve --port 8000"
        media.add(
            title_frame(
                [
                    "yolo-detector: from data to a fast HTTP service",
                    "YOLO trained from scratch, tracked in MLflow, versioned with DVC,",
                    "exported to ONNX, served by FastAPI on ONNX Runtime / OpenVINO / TensorRT.",
                    "This demo: start the service, check it, predict on an image.",
                ],
                media.work / "title.png",
            ),
            6,
        )
        serve_log = [line for line in log_path.read_text().splitlines() if line.strip()]
        media.add_terminal(
            [shown_cmd, *serve_log[:18], f"# healthy after {startup_s:.1f} s"],
            "1. start the service",
            "serve",
            12,
            steps=5,
        )
        media.add_terminal(
            [
                f"$ curl {base.replace(str(port), '8000')}/health",
                json.dumps(health),
                "",
                "$ curl http://127.0.0.1:8000/model",
                *json.dumps(model_info, indent=2).splitlines(),
            ],
            "2. is it up? which model?",
            "health",
            10,
        )
        if browser is not None:
            swagger = IMAGES / "swagger.png"
            try:
                browser.screenshot(
                    f"{base}/docs",
                    swagger,
                    wait_for=".opblock",
                    click=".opblock-post .opblock-summary",
                )
                log(f"wrote {swagger.relative_to(REPO)}")
                caption = "3. Swagger UI at /docs: every endpoint, with examples"
                media.add(caption_frame(swagger, caption, media.work / "swagger_c.png"), 10)
            except Exception as exc:  # a screenshot is optional: say why it is missing and go on
                log(f"no Swagger screenshot: {exc}")
        if image is None:
            log("skipping the prediction: no test image in data/*/images/test (run `detector data generate`)")
            return
        body, content_type = multipart("file", image)
        response = http_json(f"{base}/predict", data=body, headers={"Content-Type": content_type})
        # One detection per line, so the whole response fits the frame.
        rest = {k: v for k, v in response.items() if k != "detections"}
        media.add_terminal(
            [
                f"$ curl -F file=@{image.relative_to(REPO)} http://127.0.0.1:8000/predict",
                '{"detections": [',
                *(f"  {json.dumps(det)}," for det in response["detections"][:-1]),
                *(f"  {json.dumps(det)}" for det in response["detections"][-1:]),
                " ],",
                *(
                    f' "{key}": {json.dumps(value)}' + ("," if i < len(rest) - 1 else "")
                    for i, (key, value) in enumerate(rest.items())
                ),
                "}",
            ],
            "4. POST /predict with an image",
            "predict",
            14,
        )
        prediction = IMAGES / "prediction.jpg"
        draw_prediction(image, response, prediction)
        log(f"wrote {prediction.relative_to(REPO)} ({len(response['detections'])} detections)")
        backend = response.get("model", {}).get("backend", "?")
        media.add(
            caption_frame(
                prediction,
                f"5. the response drawn on the image: {len(response['detections'])} objects ({backend})",
                media.work / "prediction_c.png",
            ),
            10,
        )


def mlflow_part(args: argparse.Namespace, media: Media, browser: Browser | None) -> None:
    mlflow = args.project_bin / "mlflow"
    db = args.mlflow_db.resolve()
    if browser is None or not mlflow.exists() or not db.is_file():
        log(f"skipping MLflow: needs Chromium + Playwright, {mlflow} and {db}")
        return
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [str(mlflow), "ui", "--backend-store-uri", f"sqlite:///{db}", "--host", "127.0.0.1", "--port", str(port)]
    with running(cmd, media.work / "mlflow.log") as proc:
        if not wait_http(f"{base}/health", proc, timeout=120):
            log("MLflow UI did not start; see " + str(media.work / "mlflow.log"))
            return
        experiments = http_json(
            f"{base}/api/2.0/mlflow/experiments/search",
            data=json.dumps({"max_results": 100}).encode(),
            headers={"Content-Type": "application/json"},
        )["experiments"]
        named = [e for e in experiments if e["name"] == args.experiment] or [
            e for e in experiments if e["name"] != "Default"
        ]
        if not named:
            log("skipping MLflow: no experiment with runs")
            return
        exp_id = named[0]["experiment_id"]
        runs = http_json(
            f"{base}/api/2.0/mlflow/runs/search",
            data=json.dumps({"experiment_ids": [exp_id], "max_results": 50}).encode(),
            headers={"Content-Type": "application/json"},
        ).get("runs", [])
        finished = [r["info"]["run_id"] for r in runs if r["info"]["status"] == "FINISHED"]
        runs_png, compare_png = IMAGES / "mlflow_runs.png", IMAGES / "mlflow_compare.png"
        first_run = runs[0]["info"]["run_name"] if runs else None
        wait_for = f"text={first_run}" if first_run else None
        # MLflow 3 opens an "Assistant" side panel on first visit; close it so the runs table gets the width.
        close = ('[aria-label="Close"]', 'button:has-text("Close")')
        browser.screenshot(f"{base}/#/experiments/{exp_id}/runs", runs_png, wait_for=wait_for, settle_s=4, close=close)
        log(f"wrote {runs_png.relative_to(REPO)} ({len(runs)} runs)")
        caption = f"6. every training run is tracked in MLflow ({len(runs)} runs)"
        media.add(caption_frame(runs_png, caption, media.work / "runs_c.png"), 9)
        if len(finished) >= 2:
            url = f"{base}/#/compare-runs?runs={json.dumps(finished)}&experiments={json.dumps([exp_id])}"
            first_finished = next(r["info"]["run_name"] for r in runs if r["info"]["status"] == "FINISHED")
            try:
                browser.screenshot(url, compare_png, wait_for=f"text={first_finished}", settle_s=4, close=close)
            except Exception as exc:  # optional piece: say why and go on to the video
                log(f"no MLflow comparison screenshot: {exc}")
                return
            log(f"wrote {compare_png.relative_to(REPO)}")
            caption = "7. runs compared: architecture, image size, data version -> mAP"
            media.add(caption_frame(compare_png, caption, media.work / "compare_c.png"), 9)


def write_video(media: Media, out: Path) -> None:
    if not media.slides:
        log("no slides: no video")
        return
    if shutil.which("ffmpeg") is None:
        log("skipping the video: ffmpeg not found (apt-get install -y ffmpeg)")
        return
    total = sum(seconds for _, seconds in media.slides)
    if total < 60:  # the course asks for 1-2 minutes: stretch the slides evenly
        media.slides = [(frame, seconds * 60.5 / total) for frame, seconds in media.slides]
    concat = media.work / "slides.txt"
    entries = [f"file '{frame}'\nduration {seconds:.2f}" for frame, seconds in media.slides]
    # The concat demuxer ignores the last entry's duration unless the file is listed once more.
    concat.write_text("\n".join([*entries, f"file '{media.slides[-1][0]}'"]) + "\n")
    cmd = [
        "ffmpeg", "-y", "-loglevel", "error", "-f", "concat", "-safe", "0", "-i", str(concat),
        "-vf", f"fps=10,scale={VIDEO_SIZE[0]}:{VIDEO_SIZE[1]},format=yuv420p",
        "-c:v", "libx264", "-preset", "veryslow", "-tune", "stillimage", "-crf", "30", "-movflags", "+faststart",
        str(out),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    seconds = sum(s for _, s in media.slides)
    log(f"wrote {out.relative_to(REPO)} ({seconds:.0f} s, {out.stat().st_size / 1e6:.1f} MB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--project-bin", type=Path, default=REPO / ".venv" / "bin", help="where detector, mlflow are")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--mlflow-db", type=Path, default=REPO / "mlflow.db")
    parser.add_argument("--experiment", default="yolo-detector")
    parser.add_argument("--image", type=Path, help="image for the prediction (default: a generated test image)")
    parser.add_argument("--no-video", action="store_true")
    parser.add_argument("--skip-service", action="store_true", help="no service screenshots or prediction")
    parser.add_argument("--skip-mlflow", action="store_true", help="no MLflow screenshots")
    args = parser.parse_args(argv)

    browser: Browser | None = None
    if not Path(args.chromium).exists():
        log(f"no Chromium at {args.chromium} (apt-get install -y chromium): screenshots are skipped")
    elif importlib.util.find_spec("playwright") is None:
        log("Playwright is not installed (run this through scripts/make_docs_media.sh): screenshots are skipped")
    else:
        browser = Browser(args.chromium)

    with tempfile.TemporaryDirectory(prefix="docs-media-") as tmp:
        media = Media(Path(tmp))
        with browser if browser is not None else contextlib.nullcontext():
            if not args.skip_service:
                service_part(args, media, browser)
            if not args.skip_mlflow:
                mlflow_part(args, media, browser)
        if not args.no_video:
            write_video(media, DOCS / "demo.mp4")
    return 0


if __name__ == "__main__":
    sys.exit(main())
