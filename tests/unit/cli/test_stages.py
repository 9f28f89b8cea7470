"""cli/stages.py decisions that must tell the truth: whose run an exported model belongs to, which metric crowns
the champion."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest

from cli.stages import champion_value, export_provenance
from detector.config import CHAMPION_METRICS, load_config
from detector.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
REPORT = {"architecture": "yolov8n", "dataset_version": "v2", "run_id": "abc123", "weights_sha256": ""}


def weights(tmp_path: Path, name: str, content: bytes) -> tuple[Path, str]:
    path = tmp_path / name
    path.write_bytes(content)
    return path, hashlib.sha256(content).hexdigest()


def test_the_weights_train_json_describes_get_its_run_and_version(tmp_path: Path) -> None:
    best, sha = weights(tmp_path, "best.pt", b"trained")
    assert export_provenance(best, {**REPORT, "weights_sha256": sha}) == {
        "version": f"yolov8n-v2-{sha[:8]}",
        "source_run_id": "abc123",
        "dataset_version": "v2",
        "architecture": "yolov8n",
    }


def test_other_weights_get_no_run_id_and_say_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _, best_sha = weights(tmp_path, "best.pt", b"trained")
    other, other_sha = weights(tmp_path, "other.pt", b"fine-tuned elsewhere")
    with caplog.at_level(logging.INFO, logger="cli.stages"):
        provenance = export_provenance(other, {**REPORT, "weights_sha256": best_sha})
    # Empty values: export_onnx then versions the model by the checkpoint's own architecture and sha256.
    assert provenance == {"version": "", "source_run_id": "", "dataset_version": "", "architecture": ""}
    assert other_sha[:12] in caplog.text and "without a run id" in caplog.text


def test_no_train_report_is_the_same_as_other_weights(tmp_path: Path) -> None:
    other, _ = weights(tmp_path, "other.pt", b"x")
    assert export_provenance(other, {})["source_run_id"] == ""


RESULTS = {
    "val": {"mAP50": 0.9, "mAP50-95": 0.6, "precision": 0.8, "recall": 0.7},
    "ultralytics_val_pt": {"mAP50": 0.1, "mAP50-95": 0.1, "precision": 0.1, "recall": 0.1},
}


def test_the_configured_champion_metric_is_the_one_compared() -> None:
    assert champion_value(RESULTS, "val_mAP50-95") == 0.6
    assert champion_value(RESULTS, "val_mAP50") == 0.9
    assert champion_value(RESULTS, "val_recall") == 0.7
    with pytest.raises(ConfigError, match="needs the 'test' split"):
        champion_value(RESULTS, "test_mAP50")


def test_every_allowed_champion_metric_is_a_result_of_evaluate() -> None:
    from detector.evaluation.metrics import MetricsResult

    split = MetricsResult(map50=0.9, map50_95=0.6, precision=0.8, recall=0.7).as_dict()  # what evaluate writes
    full = {"val": split, "test": split}
    for metric in CHAMPION_METRICS:
        assert isinstance(champion_value(full, metric), float)


def test_unknown_champion_metric_is_rejected_when_the_config_loads() -> None:
    with pytest.raises(ConfigError, match=r"train\.mlflow\.champion_metric: .*unknown champion metric 'mAP'"):
        load_config(["train.mlflow.champion_metric=mAP"], config_dir=CONFIGS, environ={})
