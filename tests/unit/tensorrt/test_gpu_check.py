"""scripts/gpu_check.py runs its checks end to end against the CPU stand-in (--dry-run) and, without a GPU, says so
and exits cleanly. The real run needs an NVIDIA GPU (README, "TensorRT on NVIDIA GPUs")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "gpu_check.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_dry_run_exercises_every_check(tmp_path: Path) -> None:
    (tmp_path / "pycuda-2026.1.tar.gz").write_bytes(b"")  # only its name is looked at in a dry run
    proc = _run("--dry-run", "--carried", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    passed = {line.split(":")[0][5:] for line in lines if line.startswith("PASS")}
    expected = {"primary context", "device rule", "shared primary context", "no context, no CUDA", "16 threads"}
    assert expected | {"close and reopen"} <= passed, proc.stdout
    assert any(line.startswith("SKIP pycuda build: dry run") for line in lines)
    assert sum(line.startswith("INFO copy:") for line in lines) == 5  # 4 timings and the ratios
    assert lines[-1].startswith("DONE all passed")


def test_without_a_gpu_it_says_so_and_exits_cleanly(tmp_path: Path) -> None:
    proc = _run("--wheels", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("SKIP gpu:")
