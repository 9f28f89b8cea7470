"""`python -m benchmarks.run` as a user runs it: a quick backend benchmark on the real trained model, and bad input.

Quick mode on the 128 px fixture model, its own size only, two batch sizes: the point is that every available
backend and the Ultralytics baseline produce positive numbers in all three report files, not the numbers themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from detector.runtime import backends

REPO = Path(__file__).resolve().parents[2]


def _bench(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "YOLO_OFFLINE": "1", "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    cmd = [sys.executable, "-m", "benchmarks.run", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def quick_report(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    proc = _bench(
        [
            "backends",
            "--model",
            str(model_path),
            "--quick",
            "--sizes",
            "128",
            "--batches",
            "1,2",
            "--out-dir",
            str(out),
            "--no-ultralytics-pt",
        ],
        cwd=out,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_quick_run_reports_every_backend_and_the_baseline(quick_report: Path, model_path: Path) -> None:
    data = json.loads((quick_report / "benchmark.json").read_text())
    assert data["complete"] is True and data["errors"] == []
    expected = {name for name, why in backends.available().items() if not why} | {"ultralytics-onnx"}
    cells = data["backends"]["cells"]
    assert {c["runner"] for c in cells} == expected
    assert {(c["batch"], c["size"]) for c in cells} == {(1, 128), (2, 128)}
    for c in cells:
        assert c["end_to_end"]["p50_ms"] > 0 and c["end_to_end"]["throughput_per_s"] > 0, c
        assert c["backend_only"]["p50_ms"] > 0, c
        assert c["speedup_vs_ultralytics"] > 0, c
        assert c["gflops_per_s"] > 0 and c["pct_of_peak"] > 0, c
    baseline = [c for c in cells if c["runner"] == "ultralytics-onnx"]
    assert all(c["speedup_vs_ultralytics"] == 1.0 for c in baseline)
    assert data["model"]["imgsz"] == 128 and len(data["model"]["sha256"]) == 64
    assert data["machine"]["cores"] >= 1 and data["libraries"]["onnxruntime"] != "absent"
    assert data["gemm_peak"]["gflops"] > 0
    assert data["variants"][0]["gflops_per_image"] > 0
    summary = data["summary"]
    for name in expected:
        assert summary[f"{name.replace('-', '_')}_p50_ms"] > 0
    assert summary["best_speedup_vs_ultralytics"] > 0


def test_quick_run_writes_markdown_and_png(quick_report: Path) -> None:
    md = (quick_report / "benchmark.md").read_text()
    for name in [*(n for n, why in backends.available().items() if not why), "ultralytics-onnx"]:
        assert f"| {name} | 128 | 1 |" in md
    assert "INCOMPLETE" not in md
    assert (quick_report / "benchmark.png").read_bytes()[:4] == b"\x89PNG"


def _assert_rejected(proc: subprocess.CompletedProcess[str], out: Path, needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("benchmark: error:")]
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert not (out / "benchmark.json").exists()


def test_unknown_backend(model_path: Path, tmp_path: Path) -> None:
    proc = _bench(
        ["backends", "--model", str(model_path), "--backends", "nonsense", "--out-dir", str(tmp_path)], tmp_path
    )
    _assert_rejected(proc, tmp_path, "unknown backend")


def test_corrupt_model(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"definitely not protobuf" * 100)
    proc = _bench(["backends", "--model", str(bad), "--quick", "--out-dir", str(tmp_path)], tmp_path)
    _assert_rejected(proc, tmp_path, "cannot be used")


def test_unreachable_url(tmp_path: Path) -> None:
    proc = _bench(["http", "--url", "http://127.0.0.1:9", "--quick", "--out-dir", str(tmp_path)], tmp_path)
    _assert_rejected(proc, tmp_path, "cannot reach the service")
