"""Start-up on a network address without API keys (issue 21): a loud warning, or a refusal when asked for."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from api.server import check_exposure, is_loopback, uvicorn_options
from detector.config import load_config
from detector.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]


def config(*overrides: str, environ: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return load_config(list(overrides), config_dir=REPO / "configs", environ=environ or {})


def test_loopback_hosts() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.1.2.3", "example.org"]))


def test_an_open_network_server_warns_loudly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="api"):
        check_exposure(config("inference.server.host=0.0.0.0"))
    assert "NO AUTHENTICATION" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="api"):
        check_exposure(config())  # 127.0.0.1: the local demo, nothing to say
    assert caplog.text == ""


def test_require_on_network_refuses_to_start_without_keys() -> None:
    env = {
        "DETECTOR_INFERENCE__SERVER__HOST": "0.0.0.0",
        "DETECTOR_INFERENCE__SERVER__AUTH__REQUIRE_ON_NETWORK": "true",
    }
    with pytest.raises(ConfigError, match="no API key is configured"):
        check_exposure(config(environ=env))


def test_tls_goes_to_uvicorn() -> None:
    options = uvicorn_options(config("inference.server.tls_certfile=/c.pem", "inference.server.tls_keyfile=/k.pem"))
    assert options["ssl_certfile"] == "/c.pem" and options["ssl_keyfile"] == "/k.pem"
    assert "ssl_certfile" not in uvicorn_options(config())
    assert "limit_concurrency" not in uvicorn_options(config())  # idle sockets must not shed requests
