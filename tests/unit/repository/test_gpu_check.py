"""scripts/gpu_check.py: what can be checked without a GPU. --dry-run runs the real TensorRT backend's slot machinery
(owner threads, leases, pinned buffers, close, reload, the injected fault) with the network on the CPU against the
pycuda stand-in; without a GPU the real mode says so and exits cleanly; the build step names what is missing
(Python.h first) instead of failing inside a compiler. The real run needs an NVIDIA GPU (README, TensorRT)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "gpu_check.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


# What a GPU host with PyTorch rarely has (the device machine this was run on had none of them): the dry run must
# not need them, since it stands for that host's run.
ABSENT_ON_GPU_HOSTS = ("pydantic", "pydantic_core", "pydantic_settings", "omegaconf", "simplejpeg", "av", "openvino")
BLOCKER = """
import runpy, sys
class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed here")
sys.meta_path.insert(0, Absent())
sys.argv = ["gpu_check.py", *ARGS]
runpy.run_path(SCRIPT, run_name="__main__")
"""


def _run_without_service_packages(*args: str) -> subprocess.CompletedProcess[str]:
    code = BLOCKER.replace("BLOCKED", repr(set(ABSENT_ON_GPU_HOSTS))).replace("ARGS", repr(list(args)))
    code = code.replace("SCRIPT", repr(str(SCRIPT)))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help_works_and_imports_nothing_heavy() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import runpy, sys; sys.argv = ['x', '--help']; runpy.run_path({str(SCRIPT)!r}, run_name='__main__')",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "--carried" in proc.stdout and "pip download" in proc.stdout
    light = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import runpy, sys; runpy.run_path({str(SCRIPT)!r}); "
            "print(sorted(m for m in ('torch', 'pycuda', 'tensorrt', 'numpy') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert light.stdout.strip() == "[]", light.stdout + light.stderr  # imports only the standard library
    module = _script()
    args = module.parse_args(["--carried", "x"])
    assert args.carried == Path("x") and not args.dry_run
    with pytest.raises(SystemExit):
        module.parse_args([])  # one mode is required


def test_dry_run_exercises_every_check() -> None:
    proc = _run_without_service_packages("--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    passed = {line[5:].split(": ")[0] for line in lines if line.startswith("PASS")}
    expected = {"slots", "16 threads", "overlap", "close and reload", "fault (execute_async_v3 False)"}
    assert expected | {"reload after a non-sticky fault"} <= passed, proc.stdout
    assert sum(line.startswith("INFO input_dtype:") for line in lines) == 3  # two timings and the ratio
    assert "largest output difference 0.00e+00" in proc.stdout  # uint8 cast on the "GPU" == float32 on the CPU
    assert lines[-1].startswith("DONE all passed")


def test_without_a_gpu_it_says_so_and_exits_cleanly(tmp_path: Path) -> None:
    proc = _run("--carried", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("SKIP gpu:")


def test_build_names_what_is_missing_python_h_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _script()
    monkeypatch.setattr(module, "python_h", lambda: None)
    monkeypatch.setattr(module, "find_cuda_h", lambda: None)
    assert module.build_pycuda(tmp_path, tmp_path) is None
    status, name = module.results[-1]
    assert (status, name) == ("FAIL", "pycuda build")


def test_carried_wheels_are_unpacked_without_pip(tmp_path: Path) -> None:
    module = _script()
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for name in (
        "pytools-2025.1-py3-none-any.whl",
        f"siphash24-1.7-{tag}-{tag}-manylinux2014_x86_64.whl",
        "siphash24-1.7-cp39-cp39-manylinux2014_x86_64.whl",
    ):
        with zipfile.ZipFile(tmp_path / name, "w") as archive:
            archive.writestr(f"{name.split('-')[0]}/__init__.py", f"# {name}\n")
    target = tmp_path / "site"
    assert module.unpack_wheels(tmp_path, target) == ["pytools", "siphash24"]
    assert tag in (target / "siphash24" / "__init__.py").read_text()  # this Python's build, not another's
