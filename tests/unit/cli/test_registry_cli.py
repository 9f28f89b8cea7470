"""`detector registry promote` on a real MLflow SQLite store (versions carry gate records as tags, as the evaluate
stage writes them) and a real shadow endpoint on loopback: exit 2 naming class and backend, or the alias moves."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from detector.evaluation.gate import GateRecord, record_to_tags

mlflow = pytest.importorskip("mlflow")

REPO = Path(__file__).resolve().parents[3]
GOOD = {"circle": 0.80, "square": 0.85, "triangle": 0.77}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Versions 1 (champion), 2 (lost 'square' on OpenVINO), 3 (as good as 1), 4 (registered before the gate)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('registry') / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    client.create_registered_model("m")
    records = [
        GateRecord({"onnxruntime": GOOD}, {"onnxruntime": 1.0}),
        GateRecord({"onnxruntime": GOOD, "openvino": GOOD | {"square": 0.1}}, {"onnxruntime": 1.0, "openvino": 0.97}),
        GateRecord({"onnxruntime": GOOD, "openvino": GOOD}, {"onnxruntime": 0.99, "openvino": 0.99}),
        None,
    ]
    for record in records:
        tags = record_to_tags(record) if record else {}
        client.create_model_version("m", "file:///nowhere", tags=tags | {"val_mAP50-95": "0.8"})
    client.set_registered_model_alias("m", "champion", "1")
    return uri


def promote(store: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(
        [
            "--config-dir",
            str(REPO / "configs"),
            "registry",
            "promote",
            *args,
            f"train.mlflow.tracking_uri={store}",
            "train.mlflow.registered_model=m",
        ]
    )
    out, err = capsys.readouterr()
    return code, out, err


def holder(store: str, alias: str = "champion") -> str:
    return str(mlflow.MlflowClient(tracking_uri=store).get_model_version_by_alias("m", alias).version)


def test_a_version_that_lost_a_class_is_refused_naming_class_and_backend(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = promote(store, capsys, "--version", "2")
    assert code == 2 and out == ""
    last = err.strip().splitlines()[-1]  # one line, after whatever mlflow logs
    assert last.startswith("error: m v2 not promoted to @champion: class 'square' on openvino: AP50-95 0.100 vs 0.850")
    assert holder(store) == "1"
    tags = mlflow.MlflowClient(tracking_uri=store).get_model_version("m", "2").tags
    assert "square" in tags["gate.refused"]


def test_a_version_without_a_quality_record_is_refused(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = promote(store, capsys, "--version", "4")
    assert code == 2 and "no quality record" in err and holder(store) == "1"


@pytest.fixture(scope="module")
def shadow() -> Iterator[dict[str, Any]]:
    """A loopback service answering GET /model/shadow with whatever the test puts in the returned dict."""
    state: dict[str, Any] = {"status": "running", "challenger": None, "samples": 0, "match_rate": 0.98}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(state).encode() if self.path == "/model/shadow" else b"{}"
            self.send_response(200 if self.path == "/model/shadow" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()


def test_a_good_version_needs_its_shadow_sample_then_becomes_champion(
    store: str, capsys: pytest.CaptureFixture[str], shadow: dict[str, Any]
) -> None:
    need = "quality.min_shadow_samples=50"
    code, _, err = promote(store, capsys, "--version", "3", need)
    assert code == 2 and "no shadow sample given (promote with --shadow-url)" in err
    shadow["samples"] = 12
    code, _, err = promote(store, capsys, "--version", "3", "--shadow-url", shadow["url"], need)
    assert code == 2 and "12 samples < quality.min_shadow_samples 50" in err and holder(store) == "1"

    shadow["samples"] = 50
    shadow["challenger"] = {"source": "models:/m@challenger", "version": "2", "backend": "onnxruntime"}
    code, _, err = promote(store, capsys, "--version", "3", "--shadow-url", shadow["url"], need)
    assert code == 2 and "the service shadow-scores v2, not v3" in err
    shadow["challenger"]["version"] = "3"
    code, out, _ = promote(store, capsys, "--version", "3", "--shadow-url", shadow["url"], need)
    result = json.loads(out)
    assert code == 0 and result["promoted"] is True and result["previous"] == "1" and holder(store) == "3"
    assert result["shadow"] == {"status": "running", "samples": 50, "match_rate": 0.98, "version": "3"}
    code, out, _ = promote(store, capsys, "--version", "3")  # already the champion: nothing to do
    assert code == 0 and json.loads(out)["promoted"] is False


def test_another_alias_and_bad_arguments(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = promote(store, capsys, "--alias", "staging")  # the newest version (v4), onto a free alias
    assert code == 2 and "m v4 not promoted to @staging: the candidate has no quality record" in err
    code, _, _ = promote(store, capsys, "--version", "1", "--alias", "staging")
    assert code == 0 and holder(store, "staging") == "1"
    code, _, err = promote(store, capsys, "--version", "99")
    assert code == 2 and "has no version '99'" in err
    code, _, err = promote(
        store, capsys, "--version", "1", "--shadow-url", "http://127.0.0.1:9", "quality.min_shadow_samples=1"
    )
    assert code == 2 and "cannot reach the service" in err
