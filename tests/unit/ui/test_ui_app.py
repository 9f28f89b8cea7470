"""The web UI's logic without a browser or a server: drawing, formatting, and every way the API call can fail,
with httpx.MockTransport standing in for the network."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from PIL import Image

from ui.app import (
    EXAMPLES_DIR,
    ApiError,
    annotated_image,
    make_handler,
    model_summary,
    predict,
    summary,
    timings_rows,
)

URL = "http://api.test"
PAYLOAD: dict[str, Any] = {
    "detections": [
        {"class_id": 0, "class_name": "circle", "confidence": 0.93, "box": {"x1": 10, "y1": 20, "x2": 50, "y2": 60}},
        {"class_id": 2, "class_name": "triangle", "confidence": 0.5, "box": {"x1": 0, "y1": 0, "x2": 30, "y2": 30}},
    ],
    "image": {"width": 100, "height": 80},
    "model": {"name": "yolov8n", "version": "v1", "backend": "onnxruntime"},
    "timings_ms": {"total": 5.6, "read": 0.05, "decode": 0.2, "inference": 3.2},
}


def _jpeg_b64(colour: tuple[int, int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (100, 80), colour).save(buf, format="JPEG")
    return base64.b64encode(buf.getvalue()).decode()


DRAWN = {
    **PAYLOAD,
    "annotated_image": {"media_type": "image/jpeg", "width": 100, "height": 80, "base64": _jpeg_b64((255, 0, 0))},
}


def client(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    return httpx.Client(base_url=URL, transport=httpx.MockTransport(handler))


def image() -> Image.Image:
    return Image.new("RGB", (100, 80), (200, 200, 200))


def test_predict_sends_png_and_thresholds() -> None:
    seen: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=DRAWN)

    assert predict(client(api), image(), conf=0.4, iou=0.5) == DRAWN
    (req,) = seen
    assert req.url.path == "/predict/annotated"  # the service draws; the UI does not
    assert dict(req.url.params) == {"conf": "0.4", "iou": "0.5", "include": "json"}
    body = req.read()
    assert b'name="file"; filename="image.png"' in body and b"\x89PNG" in body


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(415, json={"detail": "image format GIF is not accepted"}), "refused the request (415): image"),
        (httpx.Response(422, json={"detail": [{"msg": "conf must be <= 1"}]}), "(422): conf must be <= 1"),
        (httpx.Response(503, json={"detail": "overloaded"}, headers={"Retry-After": "2"}), "Retry after 2 s"),
        (httpx.Response(500, text="Internal Server Error"), "The API failed (500): Internal Server Error"),
        (httpx.Response(200, text="<html>not the API</html>"), "answered 200 but not with JSON"),
    ],
)
def test_api_errors_become_readable_messages(response: httpx.Response, expected: str) -> None:
    with pytest.raises(ApiError) as info:
        predict(client(lambda _: response), image(), 0.25, 0.7)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), "Cannot reach the detection API at http://api.test"),
        (httpx.ReadTimeout("timed out"), "did not answer in time (ReadTimeout)"),
    ],
)
def test_transport_failures_become_readable_messages(exc: Exception, expected: str) -> None:
    def api(request: httpx.Request) -> httpx.Response:
        raise exc

    with pytest.raises(ApiError) as info:
        predict(client(api), image(), 0.25, 0.7)
    assert expected in str(info.value)


def test_connection_refused_for_real() -> None:
    # A port that was free a moment ago: a real socket-level refusal, not a mocked one.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ApiError, match=r"Cannot reach the detection API .* Is `detector serve` running"):
        predict(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5), image(), 0.25, 0.7)


def test_annotated_image_is_the_services_drawing() -> None:
    out = annotated_image(DRAWN)
    assert out.size == (100, 80)
    r, g, b = out.getpixel((50, 40))
    assert r > 200 and g < 60 and b < 60  # the red JPEG the "service" sent, not something drawn here
    with pytest.raises(ApiError, match="without a drawn image"):
        annotated_image(PAYLOAD)


def test_timings_rows_keep_order_with_total_last() -> None:
    assert timings_rows(PAYLOAD["timings_ms"]) == [["read", 0.05], ["decode", 0.2], ["inference", 3.2], ["total", 5.6]]


def test_summary_counts_classes() -> None:
    assert summary(PAYLOAD) == "Found 2 object(s) in 5.6 ms: 1 x circle, 1 x triangle."
    assert "nothing above the threshold" in summary({**PAYLOAD, "detections": []})


def test_handler_outputs_and_errors() -> None:
    handle = make_handler(client(lambda _: httpx.Response(200, json=DRAWN)))
    annotated, payload, rows, status = handle(image(), 0.25, 0.7)
    assert annotated is not None and annotated.size == (100, 80)
    assert payload == PAYLOAD and rows[-1] == ["total", 5.6] and status.startswith("Found 2")  # no base64 shown
    assert handle(None, 0.25, 0.7) == (None, None, [], "Upload an image or pick an example first.")
    failing = make_handler(client(lambda _: httpx.Response(413, json={"detail": "image is too large"})))
    assert failing(image(), 0.25, 0.7) == (
        None,
        None,
        [],
        "**Error:** The API refused the request (413): image is too large",
    )


def test_model_summary() -> None:
    info = {"version": "v1", "backend": "openvino", "device": "cpu", "input_size": [128, 128], "names": {"0": "circle"}}
    ok = model_summary(client(lambda _: httpx.Response(200, json=info)))
    assert "`v1` on `openvino`" in ok and "circle" in ok
    down = model_summary(client(lambda _: httpx.Response(503, json={"detail": "model is loading"})))
    assert "503" in down and "model is loading" in down


def test_examples_ship_with_the_package() -> None:
    examples = sorted(EXAMPLES_DIR.glob("*.jpg"))
    assert len(examples) >= 2
    for path in examples:
        assert path.stat().st_size <= 20_000
        Image.open(io.BytesIO(path.read_bytes())).verify()


def test_build_app_constructs_offline() -> None:
    pytest.importorskip("gradio")
    from ui.app import build_app

    app = build_app(URL, transport=httpx.MockTransport(lambda _: httpx.Response(200, json=PAYLOAD)))
    assert app.title == "YOLO detector"
    assert app.analytics_enabled is False


def test_users_are_parsed_and_malformed_ones_refused() -> None:
    from ui.app import parse_users

    assert parse_users("ann:secret, bob:pa:ss\n# comment\n") == [("ann", "secret"), ("bob", "pa:ss")]
    assert parse_users("") == []
    with pytest.raises(ValueError, match="user:password"):
        parse_users("ann")


def test_the_ui_needs_a_login_and_bounds_uploads(monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 21: before, no login and a 30 MB upload was accepted (stored in the temp folder, downloadable).
    pytest.importorskip("gradio")
    from tests.servers import free_port
    from ui.app import launch

    monkeypatch.setenv("DETECTOR_UI_AUTH", "ann:secret")
    port = free_port()
    app = launch(URL, host="127.0.0.1", port=port, max_file_size="1mb", block=False)
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as anonymous:
            assert anonymous.get("/config").status_code == 401
            r = anonymous.post("/gradio_api/upload", files={"files": ("a.png", b"x" * 100, "image/png")})
            assert r.status_code in (401, 403), r.status_code
        with httpx.Client(base_url=base, timeout=30) as user:
            assert user.post("/login", data={"username": "ann", "password": "secret"}).status_code == 200
            assert user.get("/config").status_code == 200
            big = user.post("/gradio_api/upload", files={"files": ("a.png", b"x" * 2_000_000, "image/png")})
            assert big.status_code == 413, big.status_code
            small = user.post("/gradio_api/upload", files={"files": ("a.png", b"x" * 1000, "image/png")})
            assert small.status_code == 200, small.text
    finally:
        app.close()
