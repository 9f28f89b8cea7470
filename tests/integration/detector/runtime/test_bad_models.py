"""Broken or foreign model files fail with typed errors a user can act on, on every backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from detector.errors import InvalidInputError, MissingMetadataError, ModelLoadError
from detector.runtime import Detector
from detector.runtime.metadata import METADATA_KEY, ModelMetadata, read_onnx_metadata

BACKENDS = ["onnxruntime", "openvino", "auto"]


def _identity_model(path: Path, shape: list[int], props: dict[str, str] | None = None) -> Path:
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, shape)
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["images"], ["output0"])], "g", [x], [y]))
    for key, value in (props or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_file(tmp_path: Path, backend: str) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        Detector.load(tmp_path / "nope.onnx", backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_garbage_file(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"this is not an onnx model at all" * 10)
    with pytest.raises(ModelLoadError, match="not a readable ONNX file"):
        Detector.load(path, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_file(tmp_path: Path, model_path: Path, backend: str) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(model_path.read_bytes()[: model_path.stat().st_size // 2])
    with pytest.raises(ModelLoadError):
        Detector.load(path, backend=backend)


def test_onnx_without_metadata(tmp_path: Path) -> None:
    path = _identity_model(tmp_path / "plain.onnx", [1, 3, 64, 64])
    with pytest.raises(MissingMetadataError, match="no model metadata"):
        Detector.load(path)


def test_malformed_metadata(tmp_path: Path) -> None:
    path = _identity_model(tmp_path / "bad.onnx", [1, 3, 64, 64], {METADATA_KEY: "{not json"})
    with pytest.raises(MissingMetadataError, match="malformed"):
        read_onnx_metadata(path)


def test_wrong_input_rank(tmp_path: Path) -> None:
    meta = ModelMetadata(names={0: "a"}, imgsz=(64, 64)).to_json()
    path = _identity_model(tmp_path / "rank.onnx", [1, 64, 64], {METADATA_KEY: meta})
    with pytest.raises(ModelLoadError, match=r"must be \(B, 3, H, W\)"):
        Detector.load(path, backend="onnxruntime")


def test_input_size_disagrees_with_metadata(tmp_path: Path) -> None:
    meta = ModelMetadata(names={0: "a"}, imgsz=(128, 128)).to_json()
    path = _identity_model(tmp_path / "size.onnx", [1, 3, 64, 64], {METADATA_KEY: meta})
    with pytest.raises(ModelLoadError, match="disagrees with its metadata"):
        Detector.load(path, backend="onnxruntime")


def test_reads_plain_ultralytics_metadata(tmp_path: Path) -> None:
    props = {"names": "{0: 'person', 1: 'bus'}", "imgsz": "[96, 96]", "stride": "32", "end2end": "True"}
    path = _identity_model(tmp_path / "ul.onnx", [1, 3, 96, 96], props)
    meta = read_onnx_metadata(path)
    assert meta.names == {0: "person", 1: "bus"} and meta.imgsz == (96, 96) and meta.head == "end2end"


def test_unknown_backend(model_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown backend 'tflite'"):
        Detector.load(model_path, backend="tflite")


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"conf": 1.5}, "conf"), ({"iou": -0.1}, "iou"), ({"max_det": 0}, "max_det")]
)
def test_bad_thresholds(model_path: Path, kwargs: dict[str, float], match: str) -> None:
    with Detector.load(model_path, backend="onnxruntime") as det, pytest.raises(InvalidInputError, match=match):
        det.predict(np.zeros((64, 64, 3), np.uint8), **kwargs)  # type: ignore[arg-type]
