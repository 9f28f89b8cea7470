"""The OpenVINO backend's static-shape cache: one compiled model per letterboxed input shape, bounded, and the same
detections as ONNX Runtime on images of mixed sizes, also from several threads at once."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from detector.config import OpenVinoConfig
from detector.evaluation import read_rgb
from detector.runtime import BackendOptions, Detector
from tests.openvino_reference import assert_uint8_input_is_exact

pytest.importorskip("openvino")

CONF = 0.1


def _mixed_images(dataset_dir: Path) -> list[np.ndarray]:
    base = [read_rgb(p) for p in sorted((dataset_dir / "images" / "val").glob("*.jpg"))[:6]]
    # Square, landscape, portrait, and a large one: four distinct letterbox shapes at 128 px.
    return [base[0], base[1][:64], base[2][:, :80], np.ascontiguousarray(np.tile(base[3], (3, 5, 1))), *base[4:]]


def _options(shape_cache: int) -> BackendOptions:
    return BackendOptions(device="cpu", openvino=OpenVinoConfig(shape_cache=shape_cache))


def _assert_same(a, b) -> None:  # type: ignore[no-untyped-def]
    assert len(a) == len(b)
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=0.05)
    np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-3)
    np.testing.assert_array_equal(a.class_id, b.class_id)


def test_static_shapes_match_onnxruntime_on_mixed_sizes(model_path: Path, dataset_dir: Path) -> None:
    images = _mixed_images(dataset_dir)
    with Detector.load(model_path, "onnxruntime", conf=CONF) as ref:
        expected = [ref.predict(im) for im in images]
    assert sum(len(e) for e in expected) >= 5
    with Detector.load(model_path, "openvino", options=_options(8), conf=CONF) as det:
        assert det.rect  # the backend still reports a dynamic input, so the runtime letterboxes per rectangle
        got = [det.predict(im) for im in images]
        shapes = det.backend.cached_shapes  # type: ignore[attr-defined]
    for a, b in zip(expected, got, strict=True):
        _assert_same(a, b)
    assert len(shapes) == len(set(shapes)) >= 3
    assert all(-1 not in s for s in shapes)


def test_batches_of_any_size_share_one_model_per_input_size(model_path: Path, dataset_dir: Path) -> None:
    # Tiles of one size, as images of different sizes cut them: 3, 5 and 2 at a time.
    tiles = [read_rgb(p) for p in sorted((dataset_dir / "images" / "val").glob("*.jpg"))[:5]]
    assert len({t.shape for t in tiles}) == 1
    with Detector.load(model_path, "onnxruntime", conf=CONF) as ref:
        expected = ref.predict_batch(tiles)
    with Detector.load(model_path, "openvino", options=_options(8), conf=CONF) as det:
        got = det.predict_batch(tiles[:3]) + det.predict_batch(tiles) + det.predict_batch(tiles[3:])
        shapes = det.backend.cached_shapes  # type: ignore[attr-defined]
    for a, b in zip(expected[:3] + expected + expected[3:], got, strict=True):
        _assert_same(a, b)
    assert shapes == [(-1, 3, *det.input_shape)]  # one compilation for the three batch sizes


def test_cache_is_bounded_and_stays_correct_under_threads(model_path: Path, dataset_dir: Path) -> None:
    images = _mixed_images(dataset_dir)
    with Detector.load(model_path, "onnxruntime", conf=CONF) as ref:
        expected = [ref.predict(im) for im in images]
    with Detector.load(model_path, "openvino", options=_options(2), conf=CONF) as det:
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(det.predict, images * 3))
        assert len(det.backend.cached_shapes) <= 2  # type: ignore[attr-defined]
    for a, b in zip(expected * 3, got, strict=True):
        _assert_same(a, b)


def test_shape_cache_zero_compiles_the_dynamic_model_once(model_path: Path, dataset_dir: Path) -> None:
    images = _mixed_images(dataset_dir)[:3]
    with (
        Detector.load(model_path, "onnxruntime", conf=CONF) as ref,
        Detector.load(model_path, "openvino", options=_options(0), conf=CONF) as det,
    ):
        for im in images:
            _assert_same(ref.predict(im), det.predict(im))
        assert det.backend.cached_shapes == []  # type: ignore[attr-defined]


def _wait_for_throughput(backend, shape: tuple[int, ...]):  # type: ignore[no-untyped-def]
    """Ask for the crowded model until its background compilation has finished (bounded)."""
    latency = backend.compiled_for(shape)
    deadline = time.monotonic() + 60
    while (got := backend.compiled_for(shape, crowded=True)) is latency:
        assert time.monotonic() < deadline, "the throughput model never finished compiling"
        time.sleep(0.05)
    return latency, got


@pytest.mark.parametrize("hint", ["adaptive", "auto"])
def test_adaptive_runs_alone_on_the_latency_model_and_together_on_throughput_streams(
    model_path: Path, dataset_dir: Path, hint: str
) -> None:
    """`auto` is adaptive too, with `singles_alone`: the service runs single images alone (on the latency model) and
    lets only video frames overlap (api/inference/batching.py)."""
    images = _mixed_images(dataset_dir)[:2]
    with Detector.load(model_path, "onnxruntime", conf=CONF) as ref:
        expected = [ref.predict(im) for im in images]
    adaptive = BackendOptions(device="cpu", openvino=OpenVinoConfig(hint=hint))  # type: ignore[arg-type]
    with Detector.load(model_path, "openvino", options=adaptive, conf=CONF) as det:
        backend = det.backend
        assert backend.adaptive and backend.slots >= 2  # type: ignore[attr-defined]
        assert backend.singles_alone is (hint == "auto")
        assert det.describe()["singles_alone"] is (hint == "auto")
        alone = [det.predict(im) for im in images]
        shape = backend.cached_shapes[0]  # type: ignore[attr-defined]
        # Nothing was crowded yet: no throughput model exists, and the first crowded call does not wait for one.
        assert backend.compiled_for(shape, crowded=True) is backend.compiled_for(shape)  # type: ignore[attr-defined]
        latency, throughput = _wait_for_throughput(backend, shape)
        assert str(latency.compiled.get_property("PERFORMANCE_HINT")).upper() == "LATENCY"
        assert str(throughput.compiled.get_property("PERFORMANCE_HINT")).upper() == "THROUGHPUT"
        assert throughput.compiled.get_property("NUM_STREAMS") == backend.slots  # type: ignore[attr-defined]
        # Concurrent calls (the service's model threads) use the throughput model and answer the same.
        with ThreadPoolExecutor(backend.slots) as pool:  # type: ignore[attr-defined]
            together = list(pool.map(det.predict, images * 8))
        assert throughput.requests >= 1
    for a, b in zip(expected, alone, strict=True):
        _assert_same(a, b)
    for a, b in zip(expected * 8, together, strict=True):
        _assert_same(a, b)


def test_a_batch_alone_runs_in_equal_parts_on_the_streams_once_their_model_exists(
    model_path: Path, dataset_dir: Path
) -> None:
    """`hint: auto` (what the CLI and the service ship): an image's tiles, a batch with no other call in flight, run
    split over the throughput streams, answering exactly what the latency model answers. The first batch of an input
    size compiles nothing more (a one-image CLI run would wait for it at exit); an unequal split is not made."""
    tiles = [read_rgb(p) for p in sorted((dataset_dir / "images" / "val").glob("*.jpg"))[:5]]
    assert len({t.shape for t in tiles}) == 1
    options = BackendOptions(device="cpu", openvino=OpenVinoConfig(hint="auto"))
    with Detector.load(model_path, "openvino", options=options, conf=CONF) as det:
        backend = det.backend
        # Two tiles a stream, however many streams this CPU gets (2 on 2 cores, more on larger machines).
        even = [tiles[i % len(tiles)] for i in range(2 * backend.slots)]  # type: ignore[attr-defined]
        first = det.predict_batch(even)
        assert backend._compiler is None  # type: ignore[attr-defined]
        second = det.predict_batch(even)  # asks for the stream model, served by the latency one meanwhile
        backend.settle()
        (shape,) = backend.cached_shapes  # type: ignore[attr-defined]
        streams = backend.compiled_for(shape, split=True)  # type: ignore[attr-defined]
        assert streams.streams == backend.slots >= 2 and streams.splits == 0  # type: ignore[attr-defined]
        split = det.predict_batch(even)
        assert streams.splits == 1
        odd = det.predict_batch([*even, tiles[0]])  # no equal parts: one request on every core
        assert streams.splits == 1
    with Detector.load(model_path, "onnxruntime", conf=CONF) as ref:
        expected = ref.predict_batch([*even, tiles[0]])
    for got in (first, second, split):
        for a, b, c in zip(first, got, expected[: len(even)], strict=True):
            np.testing.assert_array_equal(a.xyxy, b.xyxy)  # the same network on the same pixels, split or not
            np.testing.assert_array_equal(a.confidence, b.confidence)
            _assert_same(b, c)
    for a, b in zip(expected, odd, strict=True):
        _assert_same(a, b)


@pytest.mark.parametrize(("hint", "threads"), [("latency", 0), ("auto", 1), ("throughput", 1), ("adaptive", 1)])
def test_latency_hint_or_one_thread_never_compiles_a_throughput_model(
    model_path: Path, dataset_dir: Path, hint: str, threads: int
) -> None:
    options = BackendOptions(device="cpu", threads=threads, openvino=OpenVinoConfig(hint=hint))  # type: ignore[arg-type]
    with Detector.load(model_path, "openvino", options=options, conf=CONF) as det:
        image = _mixed_images(dataset_dir)[0]
        det.predict(image)
        for _ in range(3):  # nor for a batch: the latency hint runs it as one request on every core
            det.predict_batch([image, image])
        backend = det.backend
        shape = backend.cached_shapes[0]  # type: ignore[attr-defined]
        assert backend.slots == 1 and not backend.singles_alone
        for _ in range(3):
            assert backend.compiled_for(shape, crowded=True) is backend.compiled_for(shape)  # type: ignore[attr-defined]
            time.sleep(0.05)
        assert backend._compiler is None  # type: ignore[attr-defined]


def test_the_throughput_hint_has_a_slot_per_stream(model_path: Path, dataset_dir: Path) -> None:
    """`hint: throughput` (what a clip gets from `hint: auto`) compiles one model with as many streams as the backend
    has slots, so the service and a clip run a model thread, or a frame, on each."""
    options = BackendOptions(device="cpu", threads=2, openvino=OpenVinoConfig(hint="throughput"))
    with Detector.load(model_path, "openvino", options=options, conf=CONF) as det:
        det.predict(_mixed_images(dataset_dir)[0])
        backend = det.backend
        compiled = backend.compiled_for(backend.cached_shapes[0])  # type: ignore[attr-defined]
        assert str(compiled.compiled.get_property("PERFORMANCE_HINT")).upper() == "THROUGHPUT"
        assert compiled.compiled.get_property("NUM_STREAMS") == backend.slots >= 2
        assert not backend.adaptive and backend._compiler is None  # type: ignore[attr-defined]


def test_one_thread_twin_of_a_streamed_model_answers_the_same_on_one_thread_and_closes_with_it(
    model_path: Path, dataset_dir: Path
) -> None:
    """`Detector.one_thread` (a clip's other way to run its frames, detector/runtime/video_detect.py): the same model
    on one thread with the latency hint, loaded once and kept, the same detections; None where there are no
    streams (ONNX Runtime, the latency hint)."""
    images = _mixed_images(dataset_dir)
    options = BackendOptions(device="cpu", threads=2, openvino=OpenVinoConfig(hint="throughput"))
    with Detector.load(model_path, "openvino", options=options, conf=CONF) as det:
        twin = det.one_thread()
        assert twin is not None and det.one_thread() is twin and twin.backend is not det.backend
        closed: list[bool] = []
        close = twin.backend.close
        twin.backend.close = lambda: (closed.append(True), close())[-1]  # type: ignore[method-assign]
        config = twin.backend.config  # type: ignore[attr-defined]
        assert config["INFERENCE_NUM_THREADS"] == 1 and config["PERFORMANCE_HINT"] == "LATENCY"
        assert twin.backend.slots == 1 and twin.one_thread() is None and twin.conf == det.conf
        for image in images:
            _assert_same(det.predict(image), twin.predict(image))
        compiled = twin.backend.compiled_for(twin.backend.cached_shapes[0])  # type: ignore[attr-defined]
        assert compiled.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert closed == [True]  # closed with `det`
    latency = BackendOptions(device="cpu", threads=2, openvino=OpenVinoConfig(hint="latency"))
    with (
        Detector.load(model_path, "openvino", options=latency) as plain,
        Detector.load(model_path, "onnxruntime") as ort,
    ):
        assert plain.one_thread() is None and ort.one_thread() is None


def test_a_twin_whose_warm_up_fails_is_closed_and_not_kept(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from detector.runtime.backends.openvino_backend import OpenVinoBackend

    options = BackendOptions(device="cpu", threads=2, openvino=OpenVinoConfig(hint="throughput"))
    with Detector.load(model_path, "openvino", options=options, conf=CONF) as det:
        closed: list[object] = []
        close = OpenVinoBackend.close
        monkeypatch.setattr(OpenVinoBackend, "close", lambda self: (closed.append(self), close(self))[-1])

        def fails(self: Detector, *args: object, **kwargs: object) -> None:
            raise RuntimeError("warm-up failed")

        monkeypatch.setattr(Detector, "predict", fails)
        with pytest.raises(RuntimeError, match="warm-up failed"):
            det.one_thread(warm_for=(64, 48))
        assert len(closed) == 1 and closed[0] is not det.backend
        assert det.one_thread(load=False) is None  # nothing kept: the next call loads again


def test_uint8_pixels_normalised_in_the_graph_give_the_float_input_outputs_exactly(
    model_path: Path, dataset_dir: Path
) -> None:
    assert_uint8_input_is_exact(model_path, _mixed_images(dataset_dir)[:4])
