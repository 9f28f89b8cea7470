"""scripts/render_cards.py: card tables come from reports/, mlflow.db and the dataset manifests, never by hand."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sqlite3
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[3]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_cards", REPO / "scripts" / "render_cards.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["render_cards"] = module
    spec.loader.exec_module(module)
    return module


def make_mlflow_db(path: Path) -> None:
    with sqlite3.connect(path) as con:
        con.executescript(
            """
            CREATE TABLE runs (run_uuid TEXT, name TEXT, status TEXT, lifecycle_stage TEXT, start_time INTEGER);
            CREATE TABLE params (key TEXT, value TEXT, run_uuid TEXT);
            CREATE TABLE tags (key TEXT, value TEXT, run_uuid TEXT);
            CREATE TABLE latest_metrics (key TEXT, value REAL, run_uuid TEXT);
            INSERT INTO runs VALUES ('r1', 'yolov8n-v1', 'FINISHED', 'active', 1), ('r2', 'yolo11n-v2', 'FINISHED',
                'active', 2), ('r3', 'crashed', 'FAILED', 'active', 3), ('r4', 'deleted', 'FINISHED', 'deleted', 4);
            INSERT INTO params VALUES ('train.epochs', '10', 'r1'), ('train.imgsz', '256', 'r1'),
                ('train.epochs', '12', 'r2'), ('train.imgsz', '192', 'r2');
            INSERT INTO tags VALUES ('architecture', 'yolov8n', 'r1'), ('data.version', 'v1', 'r1'),
                ('git_commit', '0123456789abcdef-dirty', 'r1'), ('architecture', 'yolo11n', 'r2'),
                ('data.version', 'v2', 'r2');
            INSERT INTO latest_metrics VALUES ('final_val_mAP50-95', 0.8123, 'r1'), ('onnx_val_mAP50-95', 0.8111, 'r1'),
                ('val_mAP50-95', 0.4567, 'r2');
            """
        )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    for card in ("MODEL_CARD.md", "DATASET_CARD.md"):
        shutil.copy(REPO / card, tmp_path / card)
    reports = tmp_path / "reports"
    reports.mkdir()
    split = {"mAP50": 0.9871, "mAP50-95": 0.7654, "precision": 0.91, "recall": 0.92}
    (reports / "metrics.json").write_text(
        json.dumps(
            {
                "val": split,
                "test": {**split, "mAP50-95": 0.7001},
                "ultralytics_val_pt": {**split, "mAP50-95": 0.7659},
                "model": {"version": "yolov8n-v1-abcdef12", "input_size": [256, 256], "dataset_version": "v1"},
            }
        )
    )
    (reports / "train.json").write_text(
        json.dumps({"architecture": "yolov8n", "run_id": "run-123", "dataset_sha256": "f" * 64})
    )
    manifest = {
        "version": "v2",
        "names": {"0": "circle", "1": "square"},
        "counts": {"train": 40, "val": 8, "test": 8},
        "objects_per_class": {"train": {"0": 50, "1": 51}, "val": {"0": 9}, "test": {}},
        "sha256": "e" * 64,
    }
    (tmp_path / "data" / "v2").mkdir(parents=True)
    (tmp_path / "data" / "v2" / "manifest.json").write_text(json.dumps(manifest))
    make_mlflow_db(tmp_path / "mlflow.db")
    return tmp_path


def test_cards_are_filled_from_the_sources(repo: Path) -> None:
    script = load_script()
    assert script.main(["--repo", str(repo)]) == 0
    model_card = (repo / "MODEL_CARD.md").read_text()
    val_row = "| val | ONNX through this project's runtime (what the service returns) | 0.987 | 0.765 | 0.910 | 0.920 |"
    assert val_row in model_card
    assert "| test | ONNX through this project's runtime | 0.987 | 0.700 |" in model_card
    assert "`yolov8n-v1-abcdef12`" in model_card and "`run-123`" in model_card
    assert "| `yolov8n-v1` | yolov8n | v1 | 10 | 256 | 0.812 | 0.811 | `0123456789ab-dirty` |" in model_card
    assert "| `yolo11n-v2` | yolo11n | v2 | 12 | 192 | 0.457 | n/a |" in model_card
    assert "crashed" not in model_card and "deleted" not in model_card
    assert "2 finished runs" in model_card
    dataset_card = (repo / "DATASET_CARD.md").read_text()
    assert "| v2 | circle, square | 40 | 8 | 8 | 101 / 9 / 0 | `eeeeeeeeeeeeeeee…` |" in dataset_card


def test_rendering_is_idempotent_and_check_detects_stale_cards(repo: Path) -> None:
    script = load_script()
    script.main(["--repo", str(repo)])
    first = (repo / "MODEL_CARD.md").read_text()
    assert script.main(["--repo", str(repo), "--check"]) == 0
    script.main(["--repo", str(repo)])
    assert (repo / "MODEL_CARD.md").read_text() == first
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    metrics["val"]["mAP50-95"] = 0.5
    (repo / "reports" / "metrics.json").write_text(json.dumps(metrics))
    assert script.main(["--repo", str(repo), "--check"]) == 1
    assert (repo / "MODEL_CARD.md").read_text() == first, "--check never writes"


def test_missing_sources_leave_sections_alone(repo: Path) -> None:
    script = load_script()
    (repo / "reports" / "metrics.json").unlink()
    (repo / "mlflow.db").unlink()
    before = (repo / "MODEL_CARD.md").read_text()
    assert script.main(["--repo", str(repo)]) == 0
    assert (repo / "MODEL_CARD.md").read_text() == before


def test_missing_markers_are_an_error(repo: Path) -> None:
    script = load_script()
    (repo / "MODEL_CARD.md").write_text("# a card without markers\n")
    with pytest.raises(SystemExit, match="metrics:begin"):
        script.main(["--repo", str(repo)])
