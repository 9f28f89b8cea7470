"""docker/entrypoint.sh (the GPU image's start-up) with a fake `detector` CLI: engine first, then serve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"

# Records each call with the backend it would serve with; `export engine` exits with $FAKE_ENGINE_RC.
FAKE_DETECTOR = """
import json, os, sys
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "backend": os.environ.get("DETECTOR_INFERENCE__BACKEND")}) + "\\n")
if sys.argv[1:3] == ["export", "engine"]:
    sys.exit(int(os.environ.get("FAKE_ENGINE_RC", "0")))
"""


def run(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], list[dict[str, object]]]:
    fake = tmp_path / "detector"
    fake.write_text(f"#!{sys.executable}\n{FAKE_DETECTOR}")
    fake.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    (models / "model.onnx").write_bytes(b"onnx")
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DETECTOR")},
        "DETECTOR": str(fake),
        "FAKE_LOG": str(log),
        "DETECTOR_EXPORT__ENGINE__ENGINE_DIR": str(tmp_path / "engines"),
        **env,
    }
    proc = subprocess.run(
        ["bash", str(ENTRYPOINT), *args], env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return proc, calls


def test_builds_the_engine_then_serves_on_tensorrt(tmp_path: Path) -> None:
    proc, calls = run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    engine, serve = calls
    engine_dir = str(tmp_path / "engines")
    expected = ["export", "engine", "--onnx", "models/model.onnx", "--device", "0"]
    assert engine["argv"] == [*expected, "export.engine.precision=fp16", f"export.engine.engine_dir={engine_dir}"]
    assert serve == {"argv": ["serve", "--host", "0.0.0.0", "--port", "8000"], "backend": "tensorrt"}


def test_engine_is_built_on_the_configured_gpu(tmp_path: Path) -> None:
    """Issue 25, D7: `inference.device: cuda:1` serves on GPU 1, so the engine must be built (tactics timed) there."""
    proc, calls = run(tmp_path, DETECTOR_INFERENCE__DEVICE="cuda:1")
    assert proc.returncode == 0, proc.stderr
    assert calls[0]["argv"][4:6] == ["--device", "1"]
    (tmp_path / "cpu").mkdir()
    proc, calls = run(tmp_path / "cpu", DETECTOR_INFERENCE__DEVICE="cpu")
    assert proc.returncode == 2 and "not a GPU" in proc.stderr


def test_engine_failure_falls_back_to_onnxruntime_explicitly(tmp_path: Path) -> None:
    # Not `auto`: that would try TensorRT again inside the server, which just failed to build an engine.
    proc, calls = run(tmp_path, FAKE_ENGINE_RC="1", DETECTOR_INFERENCE__SERVER__PORT="9000")
    assert proc.returncode == 0, proc.stderr
    assert "serving on the CPU with backend=onnxruntime" in proc.stderr
    assert calls[-1] == {"argv": ["serve", "--host", "0.0.0.0", "--port", "9000"], "backend": "onnxruntime"}


@pytest.mark.parametrize("backend", ["onnxruntime", "auto"])
def test_other_backends_skip_the_engine(tmp_path: Path, backend: str) -> None:
    proc, calls = run(tmp_path, DETECTOR_INFERENCE__BACKEND=backend)
    assert proc.returncode == 0, proc.stderr
    assert [c["argv"][0] for c in calls] == ["serve"]
    assert calls[0]["backend"] == backend


def test_precision_and_serve_arguments_are_passed_on(tmp_path: Path) -> None:
    proc, calls = run(tmp_path, "serve", "--model", "models/model.onnx", DETECTOR_EXPORT__ENGINE__PRECISION="fp32")
    assert proc.returncode == 0, proc.stderr
    assert "export.engine.precision=fp32" in calls[0]["argv"]
    assert calls[1]["argv"][-2:] == ["--model", "models/model.onnx"]


def test_missing_model_says_how_to_mount_it(tmp_path: Path) -> None:
    proc, calls = run(tmp_path, DETECTOR_INFERENCE__MODEL_PATH="models/absent.onnx")
    assert proc.returncode == 2
    assert "/app/models" in proc.stderr
    assert calls == []


def test_other_commands_run_as_given(tmp_path: Path) -> None:
    proc, calls = run(tmp_path, "echo", "hello")
    assert proc.returncode == 0
    assert proc.stdout.strip() == "hello"
    assert calls == []
