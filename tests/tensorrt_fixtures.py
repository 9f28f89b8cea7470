"""Fixtures for the TensorRT backend tests: the CPU stand-in for TensorRT/pycuda (tests/standin/tensorrt_standin).

Shared by tests/unit/detector/runtime/tensorrt (no trained model) and tests/integration/detector/runtime/tensorrt
(the quick model): each folder's conftest.py imports the fixtures it uses from here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

STANDIN_DIR = Path(__file__).resolve().parent / "standin"
if str(STANDIN_DIR) not in sys.path:
    sys.path.insert(0, str(STANDIN_DIR))

import tensorrt_standin  # noqa: E402 - needs the path above

from tests.qdq import qdq_onnx_of  # noqa: E402


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """`tensorrt` and `pycuda.driver` are the stand-ins for this test (one stand-in GPU, TensorRT 10.16)."""
    tensorrt_standin.install(monkeypatch)
    return tensorrt_standin


@pytest.fixture
def qdq_onnx() -> Callable[[Path, Path, Path], tuple[Path, np.ndarray]]:
    """Makes a Q/DQ INT8 ONNX of the quick model: `qdq_onnx(model_path, dataset_dir, out) -> (out, batch)`."""
    return qdq_onnx_of
