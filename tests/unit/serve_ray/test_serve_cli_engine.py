"""`detector serve --engine ray` argument handling, without starting anything (runs with or without the extra)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def run(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "YOLO_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_without_the_ray_extra_the_error_says_what_to_install() -> None:
    # `sys.modules["ray"] = None` makes `import ray` fail as it does where the extra is not installed.
    proc = run(
        "import sys; sys.modules['ray'] = None\n"
        "from cli.main import main\n"
        "sys.exit(main(['serve', '--engine', 'ray', '--replicas', '2', '--model', 'models/model.onnx']))"
    )
    assert proc.returncode == 2, proc.stderr
    assert "`ray` extra" in proc.stderr and "make install-ray" in proc.stderr


def test_replicas_need_the_ray_engine() -> None:
    proc = run("import sys\nfrom cli.main import main\nsys.exit(main(['serve', '--replicas', '2']))")
    assert proc.returncode == 2
    assert "--replicas needs --engine ray" in proc.stderr


def test_a_missing_model_fails_before_ray_starts() -> None:
    proc = run(
        "import sys\nfrom cli.main import main\n"
        "sys.exit(main(['serve', '--engine', 'ray', '--model', '/nonexistent/model.onnx']))"
    )
    assert proc.returncode == 2
    assert "model file not found" in proc.stderr
    assert "Started a local Ray instance" not in proc.stderr
