"""Fixtures for the TensorRT tests: the CPU stand-in for TensorRT/pycuda (tests/standin/tensorrt_standin)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import pytest

STANDIN_DIR = Path(__file__).resolve().parents[2] / "standin"
if str(STANDIN_DIR) not in sys.path:
    sys.path.insert(0, str(STANDIN_DIR))

import tensorrt_standin  # noqa: E402 - needs the path above


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """`tensorrt` and `pycuda.driver` are the stand-ins for this test (one stand-in GPU, TensorRT 10.16)."""
    tensorrt_standin.install(monkeypatch)
    return tensorrt_standin


def _qdq_onnx(model_path: Path, dataset_dir: Path, out: Path) -> tuple[Path, np.ndarray]:
    """A Q/DQ INT8 ONNX of the quick model with its metadata (ONNX Runtime's static quantizer, 4 images), and the
    letterboxed batch it was calibrated on."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from detector.runtime.images import read_image
    from detector.runtime.preprocess import preprocess_batch

    paths = sorted((dataset_dir / "images" / "val").glob("*.jpg"))[:4]
    batch, _ = preprocess_batch([read_image(p) for p in paths], (128, 128), np.dtype(np.float32))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"images": batch[i : i + 1]} for i in range(len(batch))])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    quantize_static(str(model_path), str(out), Reader(), quant_format=QuantFormat.QDQ, weight_type=QuantType.QInt8)
    model, source = onnx.load(str(out)), onnx.load(str(model_path))
    if not model.metadata_props:
        model.metadata_props.extend(source.metadata_props)
    onnx.save(model, str(out))
    return out, batch


@pytest.fixture
def qdq_onnx() -> Callable[[Path, Path, Path], tuple[Path, np.ndarray]]:
    """Makes a Q/DQ INT8 ONNX of the quick model: `qdq_onnx(model_path, dataset_dir, out) -> (out, batch)`."""
    return _qdq_onnx
