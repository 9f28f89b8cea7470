"""export/uint8_input.py on the trained quick model, on CPU with ONNX Runtime: the rewritten uint8-input ONNX computes
exactly what the float model computes from the same letterboxed images (bit for bit), also through Detector, and the
original ONNX file is left as it was. The rewrite on tiny hand-built models, which needs no trained model, is in
tests/unit/export/test_uint8_input.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from detector.runtime import BackendOptions, Detector
from detector.runtime.images import read_image
from detector.runtime.preprocess import preprocess_batch
from export.uint8_input import with_uint8_input


def _session(model: bytes | str) -> ort.InferenceSession:
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def test_real_model_uint8_input_matches_float_model(model_path: Path, dataset_dir: Path, tmp_path: Path) -> None:
    before = model_path.read_bytes()
    u8_path = tmp_path / "model.u8.onnx"
    u8_path.write_bytes(with_uint8_input(before))
    assert model_path.read_bytes() == before
    paths = sorted((dataset_dir / "images" / "val").glob("*.jpg"))[:6]
    images = [read_image(p)[: 96 if i % 2 else None] for i, p in enumerate(paths)]  # some 4:3, so with padding
    floats, _ = preprocess_batch(images, (128, 128), np.float32)
    raw, _ = preprocess_batch(images, (128, 128), np.uint8)
    expected = _session(str(model_path)).run(None, {"images": floats})[0]
    ours = _session(str(u8_path)).run(None, {"images": raw})[0]
    np.testing.assert_array_equal(ours, expected)

    # Through Detector on ONNX Runtime too: uint8 input spec, 0-255 pixels in, the same detections out.
    cpu = BackendOptions(device="cpu")
    with (
        Detector.load(model_path, "onnxruntime", cpu, conf=0.1) as ref,
        Detector.load(u8_path, "onnxruntime", cpu, conf=0.1) as det,
    ):
        assert det.input_dtype == np.uint8
        for a, b in zip(det.predict_batch(images), ref.predict_batch(images), strict=True):
            np.testing.assert_array_equal(a.xyxy, b.xyxy)
            np.testing.assert_array_equal(a.class_id, b.class_id)
