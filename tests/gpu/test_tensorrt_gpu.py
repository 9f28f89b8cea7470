"""TensorRT on a real NVIDIA GPU: engines built from the trained model agree with ONNX Runtime, under concurrency.

Always collected; skipped, with the reason, where TensorRT, pycuda or a GPU is missing (every CPU-only CI machine).
Tolerances: FP32 engines (built with TF32 off, so FP32 really is FP32) match ONNX Runtime to IoU >= 0.99 and
confidence within 0.01 for every box; FP16 engines to IoU >= 0.9 and confidence within 0.05 for at least 95% of the
reference boxes (half precision moves boxes by fractions of a pixel and scores by ~1e-3, which occasionally pushes a
borderline box across the confidence threshold).
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


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod((rb - lt).clip(0), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)


def _match_rate(ours: list[Detections], ref: list[Detections], iou_min: float, conf_tol: float) -> float:
    matched = total = 0
    for a, b in zip(ours, ref, strict=True):
        total += len(b)
        if not len(a) or not len(b):
            continue
        ious = _iou(b.xyxy.astype(np.float64), a.xyxy.astype(np.float64))
        for i in range(len(b)):
            ok = (ious[i] >= iou_min) & (a.class_id == b.class_id[i])
            if ok.any() and np.min(np.abs(a.confidence[ok] - b.confidence[i])) <= conf_tol:
                matched += 1
    return matched / max(total, 1)


@pytest.mark.parametrize(
    ("precision", "iou_min", "conf_tol", "rate"), [("fp32", 0.99, 0.01, 1.0), ("fp16", 0.9, 0.05, 0.95)]
)
def test_engine_matches_onnxruntime(
    model_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    images: list[np.ndarray],
    reference: list[Detections],
    precision: str,
    iou_min: float,
    conf_tol: float,
    rate: float,
) -> None:
    engine_dir = tmp_path_factory.mktemp(f"engines-{precision}")
    spec = EngineSpec(precision=precision, profile=BatchProfile(1, 4, 4), engine_dir=str(engine_dir))
    options = BackendOptions(device="cuda:0", engine=spec, engine_builder=build_engine)
    with Detector.load(model_path, backend="tensorrt", options=options, conf=CONF) as det:
        assert det.backend_name == "tensorrt"
        assert det.describe()["precision"] == precision
        assert det.backend.engine_info.tf32 is (precision != "fp32")  # type: ignore[attr-defined]
        ours = det.predict_batch(images)  # 16 images through a max-batch-4 profile: split
        assert _match_rate(ours, reference, iou_min, conf_tol) >= rate
        # Concurrent callers (as FastAPI's thread pool would be) get what a single caller gets.
        singles = [det.predict(im) for im in images]
        with ThreadPoolExecutor(16) as pool:
            concurrent = list(pool.map(det.predict, images * 3))
        for i, r in enumerate(concurrent):
            np.testing.assert_allclose(r.xyxy, singles[i % len(images)].xyxy, atol=1e-3)
    assert list(engine_dir.glob("*.engine")), "the engine was not cached"
