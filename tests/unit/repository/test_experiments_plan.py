"""`make experiments`' plan (configs/experiments.yaml) and how scripts/experiments.py turns it into `dvc exp run`
flags; the runs themselves are e2e (tests/e2e/test_architectures.py runs every architecture the plan names)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scripts.experiments import architectures, load_plan, set_flag, settings


def test_the_shipped_plan_compares_architecture_size_and_data_version() -> None:
    plan = load_plan()
    assert architectures(plan) == ["yolov8n.yaml", "yolo11n.yaml", "yolo26n.yaml"]
    changed = {key for exp in plan["experiments"] for key in (exp.get("set") or {})}
    assert {
        "configs/train.yaml:train.model",
        "configs/train.yaml:train.imgsz",
        "configs/data.yaml:data.version",
    } <= changed
    v2 = next(e for e in plan["experiments"] if settings(plan, e).get("configs/data.yaml:data.version") == "v2")
    assert v2["init_from"] == plan["experiments"][0]["name"]  # v2 fine-tunes from the reference's weights


def test_flags_add_keys_the_file_lacks_with_hydra_plus() -> None:
    assert set_flag("configs/train.yaml:train.epochs", 10) == "configs/train.yaml:train.epochs=10"
    assert set_flag("configs/train.yaml:train.ultralytics.nbs", 16) == "configs/train.yaml:+train.ultralytics.nbs=16"
    assert set_flag("configs/train.yaml:train.model", "yolo11n.yaml") == "configs/train.yaml:train.model=yolo11n.yaml"


@pytest.mark.parametrize(
    ("experiments", "message"),
    [
        ([{"name": "a"}, {"name": "a"}], "listed twice"),
        ([{"name": "b", "init_from": "a"}, {"name": "a"}], "not listed above it"),
    ],
)
def test_a_plan_that_cannot_run_is_refused(tmp_path: Path, experiments: list[dict], message: str) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({"experiments": experiments}))
    with pytest.raises(SystemExit, match=message):
        load_plan(path)
