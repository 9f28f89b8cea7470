"""The web UI as a person uses it: a real `detector serve`, the real Gradio UI in front of it, and headless Chromium
clicking through the page. Also checks the page fetches nothing outside its own origin (it must work offline).

The screenshot goes to a temporary folder; to refresh the README's, run with DETECTOR_DOCS_SCREENSHOT=1 (and
DETECTOR_UI_MODEL=models/model.onnx to show the default model instead of the tests' quick one)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import end, free_port, spawn, wait_http

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = REPO / "docs" / "images" / "ui.png"
GRADIO_ENV = {"GRADIO_ANALYTICS_ENABLED": "False"}

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
pytest.importorskip("gradio", reason="gradio is not installed (ui extra)")


@pytest.fixture(scope="module")
def ui_url(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("ui")
    api_port, ui_port = free_port(), free_port()
    api_url, ui_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{ui_port}"
    cli = ["-m", "cli", "--config-dir", str(REPO / "configs")]
    model = os.environ.get("DETECTOR_UI_MODEL", str(model_path))
    api = spawn([*cli, "serve", "--port", str(api_port), "--model", model], work / "api.log", GRADIO_ENV)
    ui = spawn(["-m", "ui.app", "--api-url", api_url, "--port", str(ui_port)], work / "ui.log", GRADIO_ENV)
    try:
        wait_http(api_url + "/health", api, work / "api.log", timeout=60)
        wait_http(ui_url, ui, work / "ui.log", timeout=60)
        yield ui_url
    finally:
        end(ui, timeout=20)
        end(api, timeout=20)


@pytest.fixture(scope="module")
def detectable_image(model_path: Path, dataset_dir: Path) -> Path:
    """An image the served model finds objects in at the UI's default threshold: the shipped example when the model
    does, else the first validation image that it does (the quick test model is trained for a minute, and whether
    it clears 0.25 on one particular example varies with the machine it trained on)."""
    from detector.runtime import Detector
    from detector.runtime.images import read_image

    candidates = [REPO / "ui/examples/shapes_2.jpg", *sorted((dataset_dir / "images" / "val").glob("*.jpg"))]
    with Detector.load(model_path, backend="onnxruntime", conf=0.25) as det:
        for path in candidates:
            if len(det.predict(read_image(path))) > 0:
                return path
    pytest.fail("the quick model finds nothing at conf 0.25 in any validation image")


def test_upload_detect_and_screenshot(ui_url: str, detectable_image: Path, tmp_path: Path) -> None:
    screenshot = SCREENSHOT if os.environ.get("DETECTOR_DOCS_SCREENSHOT") else tmp_path / "ui.png"
    outside: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on(
                "request",
                lambda r: outside.append(r.url) if not r.url.startswith((ui_url, "data:", "blob:")) else None,
            )
            page.goto(ui_url, wait_until="networkidle")
            # The model line is filled by the page's load event from GET /model of the API.
            sync_api.expect(page.locator("#model-info")).to_contain_text("circle", timeout=20_000)
            page.locator("#image-in input[type=file]").set_input_files(str(detectable_image))
            page.locator("#image-in img").wait_for(timeout=10_000)
            page.click("#detect")
            sync_api.expect(page.locator("#response-json")).to_contain_text("class_name", timeout=20_000)
            sync_api.expect(page.locator("#status")).to_contain_text("Found", timeout=5_000)
            assert "Found 0 object" not in page.locator("#status").inner_text()
            sync_api.expect(page.locator("#timings")).to_contain_text("inference")
            page.locator("#image-out img").wait_for(timeout=10_000)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert outside == [], f"the page fetched resources outside its origin (breaks offline use): {outside}"
