"""scripts/int8_640_report.py: the FP32 - INT8 drops and the Markdown report come from the measured numbers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[3]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("int8_640_report", REPO / "scripts" / "int8_640_report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["int8_640_report"] = module
    spec.loader.exec_module(module)
    return module


def scores(map50_95: float) -> dict[str, float]:
    return {"mAP50": 0.99, "mAP50-95": map50_95, "precision": 0.9, "recall": 0.9}


def report(metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "settings": {"command": "scripts/int8_640.sh", "weights": "models/best.pt",
                     "architecture": "yolov8n", "imgsz": 640, "epochs": 10,
                     "train_seconds": 1500},
        "dataset": {"version": "v1", "imgsz": 640, "seed": 0, "counts": {"train": 200, "val": 80, "test": 80}},
        "training": {"architecture": "yolov8n"},
        "quantization": {"tool": "nncf 2.0", "preset": "performance", "subset_size": 200,
                         "calibration_split": "train", "fast_bias_correction": True, "ignored_patterns": ["x"],
                         "tensorrt_compatible": True},
        "gate": {"split": "val", "fp32": scores(0.8), "int8": scores(0.795), "drop": 0.005, "max_drop": 0.01},
        "metrics": metrics,
        "machine": {"cpu": "Some CPU", "cores": 2},
        "versions": {"nncf": "2.0"},
    }  # fmt: skip


def test_drops_per_backend_and_split() -> None:
    mod = load_script()
    metrics = {
        "onnxruntime": {"fp32": {"val": scores(0.8), "test": scores(0.7)}, "int8": {"val": scores(0.79)}},
        "openvino": {"fp32": {"val": scores(0.8)}},  # no INT8 numbers: no drop
    }
    out = mod.drops(metrics)
    assert list(out) == ["onnxruntime"]
    assert list(out["onnxruntime"]) == ["val"]  # test has no INT8 number
    assert abs(out["onnxruntime"]["val"] - 0.01) < 1e-9


def test_markdown_has_one_row_per_backend_and_split_and_the_verdict() -> None:
    mod = load_script()
    both = {"fp32": {"val": scores(0.8), "test": scores(0.7)}, "int8": {"val": scores(0.795), "test": scores(0.71)}}
    text = mod.render_markdown(report({"onnxruntime": both, "openvino": both}))
    rows = [line for line in text.splitlines() if line.startswith(("| onnxruntime", "| openvino"))]
    assert len(rows) == 4
    assert "| onnxruntime | val | 0.9900 | 0.9900 | 0.8000 | 0.7950 | +0.0050 |" in rows
    assert "| openvino | test | 0.9900 | 0.9900 | 0.7000 | 0.7100 | -0.0100 |" in rows
    assert "**passed**" in text
    assert "train 200 / val 80 / test 80" in text
    assert "25.0 min" in text


def test_markdown_says_failed_when_the_gate_failed() -> None:
    mod = load_script()
    failed = report({})
    failed["gate"] |= {"int8": scores(0.7), "drop": 0.1}
    assert "**FAILED**" in mod.render_markdown(failed)
