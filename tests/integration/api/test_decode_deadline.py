"""A deadline on every decode (issue 21): a decode still running after `decode_timeout_s` is a 504 at once, and its
pixels go back to the budget when its thread ends. Real app and model; the slow decoder is injected."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import api.inference.decoding
from tests.integration.api.conftest import MakeConfig, RunApp

SLOW_S = 2.0


@pytest.fixture(scope="module")
def app(make_config: MakeConfig, run_app: RunApp) -> Iterator[TestClient]:
    with run_app(make_config("inference.server.decode_timeout_s=0.5")) as client:
        yield client


def png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_a_decode_past_its_deadline_is_a_504_and_its_pixels_come_back(
    app: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = api.inference.decoding.decode_image_scaled

    def slow(*args: Any) -> Any:
        time.sleep(SLOW_S)
        return real(*args)

    monkeypatch.setattr(api.inference.decoding, "decode_image_scaled", slow)
    service = app.app.state.service  # type: ignore[attr-defined]
    started = time.monotonic()
    r = app.post("/predict", files={"file": ("a.png", png(), "image/png")})
    assert r.status_code == 504, r.text
    assert "decode_timeout_s" in r.json()["detail"]
    assert time.monotonic() - started < SLOW_S  # before: the client waited for the whole decode
    assert service.pixels.held > 0  # still decoding: its pixels stay counted
    deadline = time.monotonic() + SLOW_S + 5
    while service.pixels.held and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.pixels.held == 0
    monkeypatch.setattr(api.inference.decoding, "decode_image_scaled", real)
    assert app.post("/predict", files={"file": ("a.png", png(), "image/png")}).status_code == 200
