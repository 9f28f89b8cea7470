"""TensorRT on a real NVIDIA GPU: engines built from the trained model agree with ONNX Runtime, under concurrency.

Always collected; skipped, with the reason, where TensorRT, pycuda or a GPU is missing (every CPU-only CI machine).
Tolerances: FP32 engines (built with TF32 off, so FP32 really is FP32) match ONNX Runtime to IoU >= 0.99 and
confidence within 0.01; FP16 engines to IoU >= 0.9 and confidence within 0.05 for at least 95% of all boxes either
side found (half precision moves boxes by fractions of a pixel and scores by ~1e-3, which occasionally pushes a
borderline box across the confidence threshold). A uint8-input FP32 engine (`input_dtype: uint8`, normalised on the
GPU, where TensorRT may fold the 1/255 into the first convolution) is held to the FP32 tolerances and must upload
uint8.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from detector.runtime import BackendOptions, Detections, Detector
from detector.runtime.engines import BatchProfile, EngineSpec
from detector.runtime.images import read_image
from export.tensorrt import build_engine
from tests.matching import match_all

CONF = 0.1


@pytest.fixture(scope="module", autouse=True)
def _needs_tensorrt_and_gpu() -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install tensorrt-cu12)")
    pytest.importorskip("pycuda.driver", reason="pycuda is not installed or no CUDA driver is present")
    from detector.runtime.backends.tensorrt_backend import TensorRTBackend

    ok, why = TensorRTBackend.is_available()
    if not ok:
        pytest.skip(f"TensorRT cannot run here: {why}")


@pytest.fixture(scope="module")
def images(dataset_dir: Path) -> list[np.ndarray]:
    return [read_image(p) for p in sorted((dataset_dir / "images" / "val").glob("*.jpg"))[:16]]


@pytest.fixture(scope="module")
def reference(model_path: Path, images: list[np.ndarray]) -> list[Detections]:
    with Detector.load(model_path, backend="onnxruntime", options=BackendOptions(device="cpu"), conf=CONF) as det:
        return det.predict_batch(images)


def _as_boxes(dets: Detections) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return dets.xyxy, dets.confidence, dets.class_id


@pytest.mark.parametrize(
    ("precision", "input_dtype", "iou_min", "conf_tol", "rate"),
    [("fp32", "float32", 0.99, 0.01, 1.0), ("fp16", "float32", 0.9, 0.05, 0.95), ("fp32", "uint8", 0.99, 0.01, 1.0)],
)
def test_engine_matches_onnxruntime(
    model_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    images: list[np.ndarray],
    reference: list[Detections],
    precision: str,
    input_dtype: str,
    iou_min: float,
    conf_tol: float,
    rate: float,
) -> None:
    engine_dir = tmp_path_factory.mktemp(f"engines-{precision}-{input_dtype}")
    spec = EngineSpec(
        precision=precision, profile=BatchProfile(1, 4, 4), engine_dir=str(engine_dir), input_dtype=input_dtype
    )
    options = BackendOptions(device="cuda:0", engine=spec, engine_builder=build_engine)
    with Detector.load(model_path, backend="tensorrt", options=options, conf=CONF) as det:
        assert det.backend_name == "tensorrt"
        assert det.describe()["precision"] == precision
        assert det.backend.engine_info.tf32 is (precision != "fp32")  # type: ignore[attr-defined]
        assert det.input_dtype == np.dtype(input_dtype)  # the page-locked buffer Detector letterboxes into
        ours = det.predict_batch(images)  # 16 images through a max-batch-4 profile: split
        # Symmetric: a box only one side found (missed or extra) counts against the engine.
        result = match_all([_as_boxes(d) for d in ours], [_as_boxes(d) for d in reference], iou_min, conf_tol)
        assert result.matched + result.only_reference >= 20, "too few reference boxes for a meaningful comparison"
        assert result.agreement >= rate, result
        # Concurrent callers (as FastAPI's thread pool would be) get what a single caller gets.
        singles = [det.predict(im) for im in images]
        with ThreadPoolExecutor(16) as pool:
            concurrent = list(pool.map(det.predict, images * 3))
        for i, r in enumerate(concurrent):
            np.testing.assert_allclose(r.xyxy, singles[i % len(images)].xyxy, atol=1e-3)
    assert list(engine_dir.glob("*.engine")), "the engine was not cached"


def test_int8_engine_builds_with_fp16_float_parts(
    model_path: Path, dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Issue 25, D3, on real TensorRT: the Q/DQ graph with its float parts (scales included) in FP16 at opset 19
    parses and builds strongly typed, computes in int8, and its scores stay within FP16 rounding of ONNX Runtime
    on the shipped INT8 file."""
    import onnxruntime as ort

    from tests.qdq import qdq_onnx_of

    work = tmp_path_factory.mktemp("int8")
    qdq, batch = qdq_onnx_of(model_path, dataset_dir, work / "model.int8.onnx")
    spec = EngineSpec(precision="fp16", profile=BatchProfile(1, 4, 4), engine_dir=str(work / "engines"))
    info = build_engine(qdq, spec)
    assert info.precision == "int8"
    expected = ort.InferenceSession(str(qdq), providers=["CPUExecutionProvider"]).run(None, {"images": batch})[0]
    options = BackendOptions(device="cuda:0", engine=spec, engine_builder=build_engine)
    with Detector.load(qdq, backend="tensorrt", options=options) as det:
        assert det.describe()["precision"] == "int8"
        out = det.backend.run(batch)
    np.testing.assert_allclose(out[:, 4:], expected[:, 4:], atol=0.05)
