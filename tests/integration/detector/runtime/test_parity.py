"""Our runtime vs Ultralytics on the same trained model: same boxes, same scores, batch = singles, threads = serial.

The model is the real one the quick pipeline trained and exported (see tests/conftest.py).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from detector.evaluation import read_rgb
from detector.runtime import Detections, Detector
from detector.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from detector.runtime.metadata import read_onnx_metadata
from tests.matching import match

BACKENDS = ["onnxruntime", "openvino"]
CONF = 0.1  # low enough that the quick model produces plenty of boxes to compare


def _images(dataset_dir: Path, n: int = 12) -> list[np.ndarray]:
    return [read_rgb(p) for p in sorted((dataset_dir / "images" / "val").glob("*.jpg"))[:n]]


def assert_same_detections(ours: Detections, ref_xyxy, ref_conf, ref_cls, iou_min=0.99, conf_tol=0.01) -> None:
    """One-to-one: every reference box has its own box on our side (same class, IoU, score), and none is left."""
    result = match((ours.xyxy, ours.confidence, ours.class_id), (ref_xyxy, ref_conf, ref_cls), iou_min, conf_tol)
    assert result.only_reference == 0 and result.only_ours == 0, result


def assert_enough_boxes(results: list[Detections], minimum: int) -> None:
    """Two sides that both find nothing agree trivially: a comparison only counts with boxes to compare."""
    found = sum(len(r) for r in results)
    assert found >= minimum, f"only {found} boxes in {len(results)} images (< {minimum}): the comparison proves nothing"


@pytest.fixture(scope="module")
def ultralytics_reference(weights_path: Path, dataset_dir: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    YOLO = pytest.importorskip("ultralytics").YOLO
    model = YOLO(str(weights_path))
    imgsz = read_onnx_metadata(weights_path.with_name("model.onnx")).imgsz[0]
    out = []
    for image in _images(dataset_dir):
        # Ultralytics takes BGR arrays; ours take RGB.
        (r,) = model.predict(image[..., ::-1], imgsz=imgsz, conf=CONF, iou=0.7, device="cpu", verbose=False)
        out.append((r.boxes.xyxy.numpy(), r.boxes.conf.numpy(), r.boxes.cls.numpy().astype(int)))
    assert sum(len(x[0]) for x in out) >= 10, "the reference model found too few boxes for a meaningful comparison"
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_ultralytics_predict(backend: str, model_path: Path, dataset_dir: Path, ultralytics_reference) -> None:
    with Detector.load(model_path, backend=backend) as det:
        assert det.backend_name == backend
        results = det.predict_batch(_images(dataset_dir), conf=CONF, iou=0.7)
    assert_enough_boxes(results, 10)
    for ours, (xyxy, conf, cls) in zip(results, ultralytics_reference, strict=True):
        assert_same_detections(ours, xyxy, conf, cls)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_equals_single_images(backend: str, model_path: Path, dataset_dir: Path) -> None:
    images = _images(dataset_dir, 6)
    images[2] = images[2][:100, :]  # mixed sizes in one batch
    with Detector.load(model_path, backend=backend, conf=CONF) as det:
        batched = det.predict_batch(images)
        single = [det.predict(im) for im in images]
    assert_enough_boxes(single, 5)
    for b, s in zip(batched, single, strict=True):
        assert_same_detections(b, s.xyxy, s.confidence, s.class_id, iou_min=0.999, conf_tol=1e-4)


def test_large_batches_are_split(model_path: Path, dataset_dir: Path) -> None:
    class TwoAtATime(OnnxRuntimeBackend):
        calls: ClassVar[list[int]] = []

        @property
        def max_batch(self) -> int | None:
            return 2

        def run(self, batch):  # type: ignore[no-untyped-def]
            self.calls.append(len(batch))
            return super().run(batch)

    from detector.runtime import BackendOptions

    backend = TwoAtATime(model_path, BackendOptions())
    det = Detector(backend, read_onnx_metadata(model_path), conf=CONF)
    images = _images(dataset_dir, 5)
    results = det.predict_batch(images)
    assert TwoAtATime.calls == [2, 2, 1]
    reference = [det.predict(im) for im in images]
    assert_enough_boxes(reference, 5)
    for r, s in zip(results, reference, strict=True):
        assert_same_detections(r, s.xyxy, s.confidence, s.class_id, iou_min=0.999, conf_tol=1e-4)


def test_without_a_backend_limit_calls_are_bounded_by_input_pixels(model_path: Path, dataset_dir: Path) -> None:
    class Recording(OnnxRuntimeBackend):  # a dynamic batch and no limit of its own, as on a CPU
        calls: ClassVar[list[int]] = []

        def run(self, batch):  # type: ignore[no-untyped-def]
            self.calls.append(len(batch))
            return super().run(batch)

    from detector.runtime import BackendOptions

    det = Detector(Recording(model_path, BackendOptions()), read_onnx_metadata(model_path), conf=CONF)
    assert det.max_batch is None
    h, w = det.input_shape
    assert det.images_per_call == 8 * 640 * 640 // (h * w)  # 8 images of 640 px, 50 of 256 px: memory, not count
    images = _images(dataset_dir, 7)
    det.images_per_call = 3
    results = det.predict_batch(images)
    assert Recording.calls == [3, 3, 1]
    for r, s in zip(results, [det.predict(im) for im in images], strict=True):
        assert_same_detections(r, s.xyxy, s.confidence, s.class_id, iou_min=0.999, conf_tol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_calls_equal_sequential(backend: str, model_path: Path, dataset_dir: Path) -> None:
    images = _images(dataset_dir, 16)
    with Detector.load(model_path, backend=backend, conf=CONF) as det:
        sequential = [det.predict(im) for im in images]
        with ThreadPoolExecutor(max_workers=8) as pool:
            concurrent = list(pool.map(det.predict, images))
    assert_enough_boxes(sequential, 10)
    for c, s in zip(concurrent, sequential, strict=True):
        np.testing.assert_allclose(c.xyxy, s.xyxy, atol=1e-3)
        np.testing.assert_array_equal(c.class_id, s.class_id)


def test_auto_picks_a_backend_and_says_which(model_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    with caplog.at_level(logging.INFO, logger="detector.runtime.backends"):
        det = Detector.load(model_path, backend="auto")
    assert det.backend_name in ("tensorrt", "openvino", "onnxruntime")
    assert f"picked {det.backend_name}" in caplog.text


def test_rect_inference_uses_the_smallest_stride_rectangle(model_path: Path) -> None:
    with Detector.load(model_path, backend="onnxruntime") as det:
        assert det.rect and det.input_shape == (128, 128)
        wide, tall = np.zeros((720, 1280, 3), np.uint8), np.zeros((1080, 810, 3), np.uint8)
        assert det.batch_shape([wide]) == (96, 128)  # 128x72 content, height rounded up to the stride (32)
        assert det.batch_shape([tall]) == (128, 96)
        assert det.batch_shape([wide, tall]) == (128, 128)  # a mixed batch takes the max of each side
    with Detector.load(model_path, backend="onnxruntime", rect=False) as square:
        assert not square.rect


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_ultralytics_predict_on_photos(
    backend: str, model_path: Path, weights_path: Path, sample_photos: list[Path]
) -> None:
    """Non-square photos: Ultralytics' predict letterboxes them to a rectangle (rect=True); so do we."""
    from detector.runtime.images import read_image

    YOLO = pytest.importorskip("ultralytics").YOLO
    model = YOLO(str(weights_path))
    conf = 0.01  # the shapes model sees little in real photos; a low threshold still gives boxes to compare
    images = [read_image(p) for p in sample_photos]
    with Detector.load(model_path, backend=backend) as det:
        ours = [det.predict(im, conf=conf) for im in images]
    assert_enough_boxes(ours, 10)
    for image, mine in zip(images, ours, strict=True):
        (r,) = model.predict(image[..., ::-1], imgsz=128, conf=conf, iou=0.7, device="cpu", verbose=False)
        assert_same_detections(mine, r.boxes.xyxy.numpy(), r.boxes.conf.numpy(), r.boxes.cls.numpy().astype(int))
