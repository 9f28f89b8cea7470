"""API keys, scopes, rate limits, daily quotas and the admin audit log (issue 21), through the real app and model.
Keys come from a keys file (the form a mounted secret takes); the limiter's clocks are moved by the tests."""

from __future__ import annotations

import datetime as dt
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from PIL import Image

from api.admission.auth import KeyRing, new_key
from tests.integration.api.conftest import MakeConfig, RunApp

KEYS: dict[str, str] = {}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("auth")


@pytest.fixture(scope="module")
def app(make_config: MakeConfig, run_app: RunApp, folder: Path) -> Iterator[TestClient]:
    entries = []
    for name, scopes, rate, quota in (
        ("predictor", ["predict"], 0, 0),
        ("watcher", ["metrics"], 0, 0),
        ("operator", ["admin"], 0, 0),
        ("limited", ["predict"], 60, 0),
        ("metered", ["predict", "metrics"], 0, 3),
    ):
        key, entry = new_key(name, scopes, rate, quota)
        entry["burst"] = 2
        KEYS[name] = key
        entries.append(entry)
    keys_file = folder / "keys.yaml"
    keys_file.write_text(yaml.safe_dump({"keys": entries}))
    assert not any(key in keys_file.read_text() for key in KEYS.values())  # stored hashed only
    config = make_config(
        f"inference.server.auth.keys_file={keys_file}",
        f"inference.server.auth.audit_log={folder / 'audit.jsonl'}",
    )
    with run_app(config) as client:
        yield client


def png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def predict(app: TestClient, key: str | None = None, bearer: bool = False) -> httpx.Response:
    headers = {} if key is None else ({"Authorization": f"Bearer {key}"} if bearer else {"X-API-Key": key})
    return app.post("/predict", files={"file": ("a.png", png(), "image/png")}, headers=headers)


def test_health_is_open_and_everything_else_needs_a_key(app: TestClient) -> None:
    for probe in ("/health", "/livez", "/readyz"):
        assert app.get(probe).status_code == 200, probe
    for method, path in (("POST", "/predict"), ("GET", "/metrics"), ("GET", "/model"), ("GET", "/docs")):
        r = app.request(method, path)
        assert r.status_code == 401, (path, r.status_code)
        assert r.headers["www-authenticate"] == "Bearer" and "missing API key" in r.json()["detail"]
    r = predict(app, "det_not-a-key")
    assert r.status_code == 401 and "unknown API key" in r.json()["detail"]


def test_each_scope_opens_its_endpoints_only(app: TestClient) -> None:
    assert predict(app, KEYS["predictor"]).status_code == 200
    assert predict(app, KEYS["predictor"], bearer=True).status_code == 200
    assert app.get("/model", headers={"X-API-Key": KEYS["predictor"]}).status_code == 200  # any valid key
    r = app.get("/metrics", headers={"X-API-Key": KEYS["predictor"]})
    assert r.status_code == 403 and "'metrics' scope" in r.json()["detail"]
    assert app.get("/metrics", headers={"X-API-Key": KEYS["watcher"]}).status_code == 200
    r = predict(app, KEYS["watcher"])
    assert r.status_code == 403 and "'predict' scope" in r.json()["detail"]
    assert predict(app, KEYS["operator"]).status_code == 403


def test_a_key_over_its_rate_gets_429_with_retry_after(app: TestClient) -> None:
    ring: KeyRing = app.app.state.keys  # type: ignore[attr-defined]
    now = [1000.0]
    ring.clock = lambda: now[0]
    codes = [predict(app, KEYS["limited"]).status_code for _ in range(2)]
    r = predict(app, KEYS["limited"])
    assert codes == [200, 200] and r.status_code == 429, (codes, r.status_code)
    assert r.headers["retry-after"] == "1" and "rate of 60 requests a minute" in r.json()["detail"]
    now[0] += 1.0  # one request a second comes back
    assert predict(app, KEYS["limited"]).status_code == 200
    assert predict(app, KEYS["predictor"]).status_code == 200  # other keys are not affected


def test_the_daily_quota_resets_at_midnight_utc(app: TestClient) -> None:
    ring: KeyRing = app.app.state.keys  # type: ignore[attr-defined]
    day = [dt.datetime(2026, 12, 3, 23, 59, 0, tzinfo=dt.UTC)]
    ring.now = lambda: day[0]
    codes = [predict(app, KEYS["metered"]).status_code for _ in range(2)]
    assert app.get("/metrics", headers={"X-API-Key": KEYS["metered"]}).status_code == 200  # counts too
    r = predict(app, KEYS["metered"])
    assert codes == [200, 200] and r.status_code == 429
    assert r.headers["retry-after"] == "60" and "daily quota of 3" in r.json()["detail"]
    day[0] += dt.timedelta(minutes=1)  # 00:00 UTC
    assert predict(app, KEYS["metered"]).status_code == 200


def test_admin_actions_are_audited(app: TestClient, folder: Path) -> None:
    body = {"model_path": "/nowhere/model.onnx"}
    r = app.post("/admin/reload", json=body, headers={"X-API-Key": KEYS["operator"]})
    assert r.status_code == 422, r.text
    assert "/nowhere" not in r.text
    assert app.post("/admin/reload", json=body, headers={"X-API-Key": KEYS["predictor"]}).status_code == 403
    assert app.post("/admin/reload", json=body).status_code == 401
    deadline = time.monotonic() + 5  # each line is written once its response has gone out
    while (folder / "audit.jsonl").read_text().count('"result": 401') < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [json.loads(line) for line in (folder / "audit.jsonl").read_text().splitlines()]
    assert [(rec["who"], rec["what"], rec["result"]) for rec in lines[-3:]] == [
        ("operator", "POST /admin/reload", 422),
        ("predictor", "POST /admin/reload", 403),
        ("-", "POST /admin/reload", 401),
    ]
    assert lines[-3]["action"] == "reload /nowhere/model.onnx (auto)"
    assert dt.datetime.fromisoformat(lines[-1]["when"]).tzinfo is not None
