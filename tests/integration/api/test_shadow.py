"""Champion/challenger shadow scoring (inference.shadow): the real app (real trained model, lifespan run) with the
model as its own challenger, and with broken challengers (missing file, not a model, other classes); and its
offline twin, `detector registry compare`. Serving must never notice the shadow: every request answers 200.
`detector serve` itself runs a challenger in benchmarks/shadow_overhead.py, and Ray replicas in
tests/e2e/test_ray_serve.py."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import onnx
import pytest
from fastapi.testclient import TestClient

from api.schemas import ShadowReport
from cli.main import main
from tests.integration.api.conftest import REPO, MakeConfig, RunApp


def _images(dataset_dir: Path, n: int) -> list[bytes]:
    return [p.read_bytes() for p in sorted((dataset_dir / "images" / "val").glob("*"))[:n]]


def _wait_shadow(
    get: Callable[[], dict[str, Any]], until: Callable[[dict[str, Any]], bool], timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = get()
        if until(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def _metric(text: str, name: str) -> float:
    """Sum of every sample of `name` (all label sets) in a Prometheus exposition."""
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", re.M)
    return sum(float(v) for v in pattern.findall(text))


@pytest.fixture(scope="module")
def shadowed(model_path: Path, make_config: MakeConfig, run_app: RunApp) -> Iterator[TestClient]:
    """The app whose challenger is the served model itself (in its own process, as always). Its queue holds the
    six images that one test sends one at a time, however slowly the idle-priority challenger gets CPU."""
    with run_app(make_config(f"inference.shadow.model={model_path}", "inference.shadow.queue=8")) as client:
        yield client


def test_the_same_model_as_challenger_agrees_fully(shadowed: TestClient, dataset_dir: Path) -> None:
    def shadow() -> dict[str, Any]:
        return dict(shadowed.get("/model/shadow").json())

    assert _wait_shadow(shadow, lambda b: b["status"] != "loading")["status"] == "running"
    images = _images(dataset_dir, 6)
    for data in images:  # one at a time, as at c=1: nothing queued, so nothing is shed
        assert shadowed.post("/predict", files={"file": data}).status_code == 200
    body = _wait_shadow(shadow, lambda b: b["samples"] >= len(images), timeout=60)
    assert body["samples"] == len(images), body
    assert body["errors"] == 0 and body["detail"] is None
    assert body["reference_boxes"] > 0 and body["match_rate"] == 1.0
    assert all(c["recall"] == 1.0 and c["count_delta"] == 0 for c in body["per_class"].values())
    assert abs(body["confidence_shift"]) < 1e-3  # same model; only the thread count differs
    assert body["challenger"]["source"] == "model.onnx"  # a file name, never the server's path
    assert body["latency_ms"]["served_p50"] > 0 and body["latency_ms"]["challenger_p50"] > 0

    metrics = shadowed.get("/metrics").text
    assert _metric(metrics, "detector_shadow_samples_total") == body["samples"]
    assert _metric(metrics, "detector_shadow_boxes_total") == 3 * body["reference_boxes"]  # ref, cand, matched
    assert 'detector_shadow_status{status="running"} 1.0' in metrics


def test_load_is_shed_not_queued_and_no_client_fails(shadowed: TestClient, dataset_dir: Path) -> None:
    images = _images(dataset_dir, 4)
    before = shadowed.get("/model/shadow").json()

    def one(i: int) -> int:
        return shadowed.post("/predict", files={"file": images[i % 4]}).status_code

    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(one, range(40)))
    assert statuses == [200] * 40
    after = shadowed.get("/model/shadow").json()
    assert after["status"] == "running"
    assert after["shed"] > before["shed"]  # while requests queue for the served model, sampled images are shed
    metrics = shadowed.get("/metrics").text
    assert _metric(metrics, "detector_shadow_shed_total") >= after["shed"] > 0


def _other_classes(model_path: Path, out: Path) -> Path:
    """The trained model with its classes renamed: a real model the served one cannot be compared with."""
    model = onnx.load(str(model_path))
    renamed = {0: "cat", 1: "dog", 2: "bird"}
    for prop in model.metadata_props:
        if prop.key == "names":
            prop.value = repr(renamed)
        elif prop.key == "detector.metadata":
            meta = json.loads(prop.value)
            meta["names"] = {str(k): v for k, v in renamed.items()}
            prop.value = json.dumps(meta)
    onnx.save(model, str(out))
    return out


@pytest.mark.parametrize(
    ("challenger", "reason"),
    [
        ("missing", "could not be loaded: model file not found"),
        ("garbage", "could not be loaded"),
        ("other_classes", "classes differ"),
    ],
)
def test_a_broken_challenger_never_reaches_a_client(
    challenger: str,
    reason: str,
    model_path: Path,
    dataset_dir: Path,
    tmp_path: Path,
    make_config: MakeConfig,
    run_app: RunApp,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / f"{challenger}.onnx"
    if challenger == "garbage":
        path.write_bytes(b"this is not an ONNX model")
    elif challenger == "other_classes":
        _other_classes(model_path, path)
    caplog.set_level(logging.ERROR, logger="api.monitoring.shadow")
    with run_app(make_config(f"inference.shadow.model={path}", "inference.backend=onnxruntime")) as client:
        for data in _images(dataset_dir, 3):
            assert client.post("/predict", files={"file": data}).status_code == 200
        body = _wait_shadow(lambda: dict(client.get("/model/shadow").json()), lambda b: b["status"] == "failed")
        assert body["status"] == "failed", body
        assert reason in body["detail"] and str(tmp_path) not in body["detail"]
        assert body["errors"] == 1 and body["samples"] == 0
        for data in _images(dataset_dir, 2):  # and serving goes on
            assert client.post("/predict", files={"file": data}).status_code == 200
        assert client.get("/health").status_code == 200
    failures = [r for r in caplog.records if r.name == "api.monitoring.shadow" and "stopped" in r.getMessage()]
    assert len(failures) == 1  # logged once, with the full reason


def _compare(capsys: pytest.CaptureFixture[str], champion: Path, challenger: Path, *args: str) -> tuple[int, str, str]:
    cli = ["--config-dir", str(REPO / "configs"), "registry", "compare", "--backend", "onnxruntime"]
    code = main([*cli, "--champion", str(champion), "--challenger", str(challenger), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_registry_compare_prints_the_shadow_report_offline(
    model_path: Path, dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _compare(capsys, model_path, model_path, "--data", str(dataset_dir), "--limit", "6")
    assert code == 0, err
    report = json.loads(out)
    assert report["samples"] == 6 and report["match_rate"] == 1.0 and report["reference_boxes"] > 0
    assert set(ShadowReport.model_fields) - {"detail", "shed", "errors", "sample", "pending"} <= set(report)

    other = _other_classes(model_path, tmp_path / "other.onnx")
    code, out, err = _compare(capsys, model_path, other, "--data", str(dataset_dir), "--limit", "2")
    assert code == 2 and out == ""
    assert "classes differ" in err and len(err.strip().splitlines()) == 1
