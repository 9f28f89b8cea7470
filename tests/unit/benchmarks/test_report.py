"""The report writer: every file lands atomically, the JSON carries a flat summary and the `complete` flag."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import report as report_module
from benchmarks.report import summary, write_report
from benchmarks.stats import summarize


def _cell(runner: str, size: int, batch: int, p50: float, backend: float | None = None) -> dict[str, Any]:
    return {
        "runner": runner,
        "size": size,
        "batch": batch,
        "end_to_end": summarize([p50, p50, p50], batch),
        "backend_only": summarize([backend, backend], batch) if backend else None,
        "error": None,
        "overhead_fraction": None if backend is None else round((p50 - backend) / p50, 4),
        "speedup_vs_ultralytics": None,
        "gflops_per_s": 10.0,
        "pct_of_peak": 20.0,
    }


def _report(complete: bool = True) -> dict[str, Any]:
    cells = [
        _cell("onnxruntime", 256, 1, 20.0, 18.0),
        _cell("openvino", 256, 1, 10.0, 9.0),
        _cell("ultralytics-onnx", 256, 1, 40.0),
        _cell("openvino", 640, 1, 50.0, 47.0),
        _cell("ultralytics-onnx", 640, 1, 100.0),
    ]
    for c in cells:
        base = 40.0 if c["size"] == 256 else 100.0
        c["speedup_vs_ultralytics"] = round(base / c["end_to_end"]["p50_ms"], 4)
    failed = {**_cell("openvino", 640, 4, 1.0), "end_to_end": None, "error": "RuntimeError: boom"}
    return {
        "complete": complete,
        "machine": {"cpu": "Test CPU", "cores": 2, "gpus": [], "load_avg_1m": 0.5},
        "libraries": {"python": "3.11", "numpy": "2.0"},
        "settings": {"threads": 2, "budget": {"warmup": 1}},
        "model": {"path": "m.onnx", "version": "v1", "imgsz": 256, "sha256": "ab" * 32, "precision": "fp32"},
        "gemm_peak": {"gflops": 50.0, "n": 2048.0, "threads": 2.0},
        "backends": {"cells": [*cells, failed] if not complete else cells},
        "http": {
            "url": "http://x",
            "model": {"input_size": [640, 640]},
            "cells": [
                {
                    "input": "multipart",
                    "concurrency": 1,
                    "sent": 5,
                    "ok": 5,
                    "errors": 0,
                    "non_2xx": {},
                    "exceptions": {},
                    "throughput_rps": 20.0,
                    "latency": summarize([45.0] * 5),
                    "error": None,
                },
            ],
        },
        "targets": {"http_vs_ultralytics": {"limit": 0.6, "value": 0.45, "met": True, "where": "multipart"}},
        "notes": ["a note"],
        "errors": [] if complete else ["openvino 640 px batch 4: RuntimeError: boom"],
    }


def test_summary_is_flat_and_names_runners() -> None:
    s = summary(_report())
    assert all(not isinstance(v, dict | list) for v in s.values())
    assert s["complete"] is True
    assert s["onnxruntime_p50_ms"] == pytest.approx(20.0)
    assert s["ultralytics_onnx_p50_ms"] == pytest.approx(40.0)
    assert s["openvino_640_p50_ms"] == pytest.approx(50.0)
    assert s["best_backend"] == "openvino"
    assert s["best_speedup_vs_ultralytics"] == pytest.approx(4.0)
    assert s["best_speedup_vs_ultralytics_640"] == pytest.approx(2.0)
    assert s["max_overhead_640"] == pytest.approx(0.06)
    assert s["http_c1_p50_ms"] == pytest.approx(45.0)
    assert s["http_vs_ultralytics"] == pytest.approx(0.45)
    assert s["gemm_peak_gflops"] == pytest.approx(50.0)


def test_write_report_writes_all_three(tmp_path: Path) -> None:
    paths = write_report(_report(), tmp_path / "reports")
    data = json.loads(paths["json"].read_text())
    assert data["complete"] is True and data["summary"]["complete"] is True
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["md"].read_text()
    assert "| openvino | 256 | 1 |" in md and "INCOMPLETE" not in md
    assert not list((tmp_path / "reports").glob("*.partial"))


def test_incomplete_report_says_so_everywhere(tmp_path: Path) -> None:
    paths = write_report(_report(complete=False), tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["complete"] is False and data["summary"]["complete"] is False
    md = paths["md"].read_text()
    assert "INCOMPLETE" in md and "RuntimeError: boom" in md


def test_a_failing_write_leaves_the_previous_report_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_report(_report(), tmp_path)
    before = (tmp_path / "benchmark.json").read_text()

    def broken_markdown(report: dict[str, Any]) -> str:
        raise RuntimeError("disk full")

    monkeypatch.setattr(report_module, "markdown", broken_markdown)
    bad = _report()
    bad["notes"] = ["second run"]
    with pytest.raises(RuntimeError):
        write_report(bad, tmp_path)
    assert (tmp_path / "benchmark.json").read_text() == before
    assert not list(tmp_path.glob(".*partial"))
