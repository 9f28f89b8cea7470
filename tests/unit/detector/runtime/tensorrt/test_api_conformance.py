"""Our TensorRT code type-checks against the real TensorRT 10.x and 11.x Python APIs.

scripts/trt_stubs.py downloads the official bindings wheels (tensorrt-cu12-bindings 10.x, tensorrt-cu13-bindings
11.x), loads them against tiny C stub libraries and generates `.pyi` stubs with pybind11-stubgen; mypy then checks
export/tensorrt.py and the TensorRT backend against each version (pycuda against a hand-written stub). A snippet using
APIs that TensorRT 11 removed must fail against 11.x, proving the check can fail at all.

Skipped only when the package registry cannot be reached. First run about 10 s (download + stubgen), then cached
under .cache/trt-stubs/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[5]
PYCUDA_STUBS = Path(__file__).resolve().parent / "pycuda_stubs"
CHECKED = [
    "export/tensorrt.py",
    "detector/runtime/engines.py",
    "export/fp16.py",
    "export/uint8_input.py",
    "detector/runtime/backends/tensorrt_backend.py",
    "detector/runtime/backends/cuda_owner.py",
    "detector/runtime/backends/tensorrt_logger.py",
]
REMOVED_IN_11 = """\
import tensorrt as trt

def build(builder: trt.Builder) -> None:
    builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    builder.create_builder_config().set_flag(trt.BuilderFlag.FP16)
"""


@pytest.fixture(scope="module")
def stub_dirs() -> dict[str, Path]:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "trt_stubs.py")], capture_output=True, text=True, timeout=600
    )
    if proc.returncode == 3:
        pytest.skip(f"package registry unreachable, cannot fetch the TensorRT bindings wheels: {proc.stderr[-500:]}")
    assert proc.returncode == 0, proc.stderr
    return {major: Path(path) for major, path in json.loads(proc.stdout).items()}


def _mypy(stubs: Path, *targets: str) -> subprocess.Popen[str]:
    env = {**os.environ, "MYPYPATH": f"{stubs}{os.pathsep}{PYCUDA_STUBS}"}
    # A cache per TensorRT version: stubs of one version must never answer for the other.
    cmd = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(stubs.parent / "mypy-cache"), *targets]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_our_tensorrt_code_typechecks_against_tensorrt_10_and_11(stub_dirs: dict[str, Path]) -> None:
    assert set(stub_dirs) == {"10", "11"}
    runs = {major: _mypy(stubs, *CHECKED) for major, stubs in stub_dirs.items()}  # in parallel
    for major, proc in runs.items():
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"mypy against TensorRT {major}.x stubs:\n{out}"


def test_the_check_fails_on_apis_removed_in_tensorrt_11(stub_dirs: dict[str, Path], tmp_path: Path) -> None:
    snippet = tmp_path / "removed_in_11.py"
    snippet.write_text(REMOVED_IN_11)
    runs = {major: _mypy(stubs, str(snippet)) for major, stubs in stub_dirs.items()}
    outputs = {major: proc.communicate(timeout=300)[0] for major, proc in runs.items()}
    assert runs["10"].returncode == 0, f"10.x still has these (deprecated) APIs:\n{outputs['10']}"
    assert runs["11"].returncode != 0
    assert '"type[NetworkDefinitionCreationFlag]" has no attribute "EXPLICIT_BATCH"' in outputs["11"]
    assert '"type[BuilderFlag]" has no attribute "FP16"' in outputs["11"]
