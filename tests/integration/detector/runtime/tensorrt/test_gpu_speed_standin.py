"""The "speed on the GPU" items of issue 14, on the CPU stand-in: what goes over the bus and through which memory.

  * Letterboxing writes each image straight into the execution slot's page-locked input buffer (`lend_input`): no
    batch array in between, no host copy before the upload, the same outputs as the old batch-array path.
  * `input_dtype: uint8` engines: the ONNX gets a uint8 input, a Cast and a multiply by 1/255 (export/uint8_input.py);
    the backend letterboxes 0-255 pixels into a uint8 page-locked buffer and uploads a quarter of the bytes.

A real GPU may fuse the Cast and multiply into the first convolution, so there the uint8 engine matches the float32
one within floating-point tolerance; on the stand-in (ONNX Runtime) it is bit-exact, tested here on the trained quick
model. That the stand-in refuses a uint8 input not cast straight to float needs no model: it is in
tests/unit/detector/runtime/tensorrt/test_gpu_speed_standin.py.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from detector.errors import InvalidInputError
from detector.runtime import BackendOptions, Detections, Detector
from detector.runtime import preprocess as preprocess_module
from detector.runtime.backends.tensorrt_backend import TensorRTBackend
from detector.runtime.engines import BatchProfile, EngineSpec, read_sidecar
from detector.runtime.images import read_image
from detector.runtime.metadata import sha256_file
from export.tensorrt import build_engine

CONF = 0.1


@pytest.fixture(scope="module")
def images(dataset_dir: Path) -> list[np.ndarray]:
    return [read_image(p) for p in sorted((dataset_dir / "images" / "val").glob("*.jpg"))[:8]]


def _options(engine_dir: Path, input_dtype: str = "float32", min_batch: int = 1) -> BackendOptions:
    spec = EngineSpec(
        precision="fp32",
        profile=BatchProfile(min_batch, max(min_batch, 4), 8),
        engine_dir=str(engine_dir),
        input_dtype=input_dtype,
    )
    return BackendOptions(device="cuda:0", engine=spec, engine_builder=build_engine)


def _assert_identical(ours: list[Detections], ref: list[Detections]) -> None:
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_array_equal(a.xyxy, b.xyxy)
        np.testing.assert_array_equal(a.confidence, b.confidence)
        np.testing.assert_array_equal(a.class_id, b.class_id)


def _spy_letterbox(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """Record the array every image is letterboxed into."""
    targets: list[np.ndarray] = []
    real = preprocess_module.letterbox_into

    def spy(image: np.ndarray, out: np.ndarray) -> preprocess_module.LetterboxInfo:
        targets.append(out)
        return real(image, out)

    monkeypatch.setattr(preprocess_module, "letterbox_into", spy)
    return targets


# --- letterbox straight into the pinned buffer ----------------------------------------------------------------------


@pytest.mark.parametrize("min_batch", [1, 2])  # 2: a profile above one image, so a single image is zero-padded
def test_letterbox_lands_in_the_pinned_buffer_with_no_batch_array_between(
    standin: ModuleType,
    model_path: Path,
    tmp_path: Path,
    images: list[np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    min_batch: int,
) -> None:
    with Detector.load(
        model_path, backend="tensorrt", options=_options(tmp_path, min_batch=min_batch), conf=CONF
    ) as det:
        det.predict_batch(images)  # first calls: nothing lazy left
        targets = _spy_letterbox(monkeypatch)
        standin.cuda.stats["htod"].clear()
        tracemalloc.start()
        try:
            ours = [*det.predict_batch(images), det.predict(images[0])]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # Every image was letterboxed once, into page-locked memory, and nothing else was uploaded from elsewhere.
        assert len(targets) == len(images) + 1
        assert all(standin.cuda.is_pinned(t) for t in targets), "an image was letterboxed outside the pinned buffer"
        inputs = [c for c in standin.cuda.stats["htod"] if c["dtype"] == "float32"]
        assert len(inputs) == 2 and all(c["pinned"] for c in inputs)
        # No float32 batch array was allocated on the way (the stand-in's own copy of the input is one batch).
        batch_bytes = len(images) * 3 * 128 * 128 * 4
        assert peak < 1.5 * batch_bytes, f"peak {peak} bytes: a batch array besides the pinned buffer"

        # The old path (a batch array, then `run`) gives exactly the same detections.
        monkeypatch.setattr(det.backend, "lend_input", lambda shape: None)
        old = [*det.predict_batch(images), det.predict(images[0])]
    _assert_identical(ours, old)
    assert standin.cuda.live_allocations() == 0


def test_a_lease_holds_its_slot_and_expires_with_its_block(
    standin: ModuleType, model_path: Path, tmp_path: Path
) -> None:
    backend = TensorRTBackend(model_path, _options(tmp_path))
    try:
        assert backend.slots == 2
        with backend.lend_input((3, 3, 128, 128)) as lease:
            assert len(backend._free) == 1  # held from letterbox to download
            assert lease.array.shape == (3, 3, 128, 128) and lease.array.dtype == np.float32
            lease.array[...] = 0.5
            out = lease.run()
        assert len(backend._free) == 2
        np.testing.assert_array_equal(out, backend.run(np.full((3, 3, 128, 128), 0.5, np.float32)))
        with pytest.raises(RuntimeError, match="after its `with` block"):
            lease.run()
        with pytest.raises(ValueError, match="read-only"):
            lease.array[0] = 0
        with pytest.raises(Exception, match="max batch"), backend.lend_input((9, 3, 128, 128)):
            pass
        assert len(backend._free) == 2
    finally:
        backend.close()


# --- uint8 upload, normalised on the GPU ----------------------------------------------------------------------------


def test_uint8_engine_uploads_uint8_pixels_and_detects_the_same(
    standin: ModuleType,
    model_path: Path,
    tmp_path: Path,
    images: list[np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    onnx_sha = sha256_file(model_path)
    with Detector.load(model_path, backend="tensorrt", options=_options(tmp_path / "f32"), conf=CONF) as det:
        standin.cuda.stats["htod"].clear()
        reference = det.predict_batch(images)
        float_uploads = list(standin.cuda.stats["htod"])
        float_engine = det.backend.engine_info  # type: ignore[attr-defined]

    with Detector.load(model_path, backend="tensorrt", options=_options(tmp_path / "u8", "uint8"), conf=CONF) as det:
        info = det.backend.engine_info  # type: ignore[attr-defined]
        assert det.input_dtype == np.uint8 and det.backend.input_spec.dtype == np.uint8
        assert info.input_dtype == "uint8" and read_sidecar(info.path).input_dtype == "uint8"
        assert "-u8-" in info.key and info.key != float_engine.key
        targets = _spy_letterbox(monkeypatch)
        standin.cuda.stats["htod"].clear()
        ours = det.predict_batch(images)
        uploads = list(standin.cuda.stats["htod"])
        assert all(t.dtype == np.uint8 and standin.cuda.is_pinned(t) for t in targets)
        with pytest.raises(InvalidInputError, match="uint8 pixels"):  # [0, 1] floats would truncate to 0
            det.backend.run(np.zeros((1, 3, 128, 128), np.float32))
        monkeypatch.setattr(det.backend, "lend_input", lambda shape: None)
        old_path = det.predict_batch(images)  # preprocess_batch(uint8) + run: the same pixels

    batch = len(images) * 3 * 128 * 128
    assert float_uploads == [{"nbytes": 4 * batch, "dtype": "float32", "pinned": True}]
    assert uploads == [{"nbytes": batch, "dtype": "uint8", "pinned": True}], "a quarter of the bytes, as uint8"
    _assert_identical(ours, reference)  # bit-exact here (ONNX Runtime); a GPU may fuse the scale into the conv
    _assert_identical(old_path, reference)
    assert sha256_file(model_path) == onnx_sha, "the ONNX file itself must never be rewritten"
