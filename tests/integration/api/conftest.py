"""Fixtures for API tests: the real app (real trained model, lifespan run by TestClient), waited until ready."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.service import DetectorFactory
from detector.config import Config, load_config

REPO = Path(__file__).resolve().parents[3]


def wait_ready(client: TestClient, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get("/health")
        if r.status_code == 200:
            return
        assert r.json()["status"] == "loading", r.json()  # "failed" would never recover: say why now
        time.sleep(0.02)
    raise AssertionError("the app did not become ready in time")


MakeConfig = Callable[..., Config]
RunApp = Callable[..., AbstractContextManager[TestClient]]


@pytest.fixture(scope="session")
def make_config(model_path: Path) -> MakeConfig:
    """`make_config("inference.server.queue_size=2", ...)`: the repo's configs + the test model + overrides.

    The environment is ignored so a developer's DETECTOR_* variables cannot change what the tests see.
    """

    def make(*overrides: str) -> Config:
        return load_config([f"inference.model_path={model_path}", *overrides], config_dir=REPO / "configs", environ={})

    return make


@pytest.fixture(scope="session")
def run_app() -> RunApp:
    """`with run_app(config, factory) as client:` a TestClient whose lifespan ran and whose model is ready."""

    @contextmanager
    def run(config: Config, factory: DetectorFactory | None = None) -> Iterator[TestClient]:
        with TestClient(create_app(config, factory)) as client:
            wait_ready(client)
            yield client

    return run


@pytest.fixture(scope="module")
def client(make_config: MakeConfig, run_app: RunApp) -> Iterator[TestClient]:
    """The app with the repository's default configuration."""
    with run_app(make_config()) as c:
        yield c
