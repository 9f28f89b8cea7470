"""The things being timed, behind one interface: our `Detector` on each backend, and Ultralytics' predictor.

A runner is loaded once per model file, then `prepare`d per batch: it returns the calls to time. End-to-end is what
a caller sees (pre-process + inference + post-process); backend-only is the raw inference call on a ready batch,
so overhead = e2e - backend.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from detector.config import OpenVinoConfig
from detector.runtime import BackendOptions, Detector, Timings
from detector.runtime.engines import EngineSpec
from detector.runtime.preprocess import preprocess_batch

Images = list[npt.NDArray[np.uint8]]
ULTRALYTICS_ONNX = "ultralytics-onnx"
ULTRALYTICS_PT = "ultralytics-pt"
# Ultralytics' own OpenVINO exports of the same weights (`YOLO(pt).export(format="openvino"[, int8=True])`): the
# strongest CPU path a user has without this project (benchmarks.peers).
ULTRALYTICS_OPENVINO = "ultralytics-openvino"
ULTRALYTICS_OPENVINO_INT8 = "ultralytics-openvino-int8"
ULTRALYTICS_OPENVINO_F32 = "ultralytics-openvino (forced f32)"  # the same export computing in f32, as ours does


@dataclass(frozen=True)
class Calls:
    """`end_to_end()` returns the inference time measured inside that same call (ms), by our `Timings` or by
    Ultralytics' profiler. `backend_only` times the bare backend call on a ready batch; None where there is no
    public way to make that call (Ultralytics)."""

    end_to_end: Callable[[], float]
    backend_only: Callable[[], object] | None


class Runner(Protocol):
    name: str

    def prepare(self, images: Images) -> Calls: ...

    def close(self) -> None: ...


class DetectorRunner:
    """This project's runtime on one backend."""

    def __init__(
        self,
        backend: str,
        model: Path,
        threads: int,
        precision: str = "fp32",
        name: str | None = None,
        openvino: OpenVinoConfig | None = None,
    ) -> None:
        self.name = name or backend
        # CPU backends are pinned to the CPU (ONNX Runtime would otherwise pick CUDA where installed, against a
        # CPU baseline); TensorRT runs on the GPU by definition. `precision` only matters to TensorRT engines.
        device = "auto" if backend == "tensorrt" else "cpu"
        from export.tensorrt import build_engine  # the benchmark builds missing engines, as `detector serve` does

        engine = EngineSpec(precision=precision)
        options = BackendOptions(
            threads=threads,
            device=device,
            engine=engine,
            engine_builder=build_engine,
            openvino=openvino or OpenVinoConfig(),
        )
        self.detector = Detector.load(model, backend, options=options)

    def prepare(self, images: Images) -> Calls:
        detector = self.detector
        # The same batch the e2e path builds, made once: only the backend call is inside the backend-only loop.
        shape = detector.batch_shape(images) if detector.rect else detector.input_shape
        batch, _ = preprocess_batch(images, shape, detector.input_dtype)

        def end_to_end() -> float:
            timings = Timings()
            detector.predict_batch(images, timings=timings)
            return timings.inference_ms

        return Calls(end_to_end, lambda: detector.backend.run(batch))

    def close(self) -> None:
        self.detector.close()


class UltralyticsRunner:
    """The baseline: `YOLO(path).predict(list_of_images)`, with Ultralytics' own pre/post-processing and session.

    Its in-call inference time is its own profiler's reading (`Results.speed["inference"]`, per image, so x batch),
    which also stands in for backend-only time: the predictor has no public way to call the bare model.
    """

    def __init__(self, name: str, model: Path, size: int, threads: int) -> None:
        import torch
        from ultralytics import YOLO

        # The .pt model runs on torch's intra-op pool: give it the same thread count as the other runners.
        # (The ONNX baseline's session keeps ONNX Runtime's default: one thread per physical core.)
        torch.set_num_threads(threads)
        self.name = name
        self.size = size
        self.path = model
        self.model: Any = YOLO(str(model), task="detect")

    def prepare(self, images: Images) -> Calls:
        # Ultralytics takes numpy images as BGR (OpenCV order): converted once, outside the timed calls.
        bgr = [np.ascontiguousarray(img[..., ::-1]) for img in images]

        def end_to_end() -> float:
            results = self.model.predict(bgr, imgsz=self.size, conf=0.25, iou=0.7, device="cpu", verbose=False)
            return float(results[0].speed["inference"]) * len(bgr)

        return Calls(end_to_end, None)

    def close(self) -> None:
        self.model = None


def force_openvino_f32(runner: UltralyticsRunner, image: npt.NDArray[np.uint8]) -> UltralyticsRunner:
    """`runner` (an Ultralytics OpenVINO model) recompiled to compute in f32, as ours does by default.

    Ultralytics compiles its OpenVINO models with only `PERFORMANCE_HINT: LATENCY`, so on CPUs with AVX512_BF16/AMX
    they compute in bf16 (OpenVINO's default there); this gives the same-precision comparison. It reaches into
    Ultralytics' `OpenVINOBackend` (8.4: `predictor.model.backend.compile_model`, a partial of `core.compile_model`
    with that config) after one predict has built it.
    """
    import openvino as ov

    bgr = np.ascontiguousarray(image[..., ::-1])
    runner.model.predict(bgr, imgsz=runner.size, device="cpu", verbose=False)
    backend = runner.model.predictor.model.backend
    compile_model = backend.compile_model
    config = {**compile_model.keywords["config"], "INFERENCE_PRECISION_HINT": ov.Type.f32}
    backend.compile_model = functools.partial(
        compile_model.func, device_name=compile_model.keywords["device_name"], config=config
    )
    xml = next(runner.path.glob("*.xml"))  # the export folder's model, as Ultralytics read it
    backend.ov_compiled_model = backend.compile_model(ov.Core().read_model(str(xml)))
    precision = backend.ov_compiled_model.get_property("INFERENCE_PRECISION_HINT")
    if str(precision) not in ("<Type: 'float32'>", "f32", "float32"):
        raise RuntimeError(f"could not force f32 on {runner.name}: it reports {precision}")
    runner.name = ULTRALYTICS_OPENVINO_F32
    return runner
