"""The things being timed, behind one interface: our `Detector` on each backend, and Ultralytics' predictor.

A runner is loaded once per model file and then timed at several batch sizes. `end_to_end` is what a caller sees
(pre-process + inference + post-process); `backend_only` is the raw inference call, so overhead = e2e - backend.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from benchmarks.stats import Budget, measure
from detector.runtime import BackendOptions, Detector
from detector.runtime.preprocess import preprocess_batch

Images = list[npt.NDArray[np.uint8]]
ULTRALYTICS_ONNX = "ultralytics-onnx"
ULTRALYTICS_PT = "ultralytics-pt"


class Runner(Protocol):
    name: str

    def end_to_end(self, images: Images, budget: Budget) -> list[float]: ...

    def backend_only(self, images: Images, budget: Budget) -> list[float]: ...

    def close(self) -> None: ...


class DetectorRunner:
    """This project's runtime on one backend."""

    def __init__(self, backend: str, model: Path, threads: int) -> None:
        self.name = backend
        self.detector = Detector.load(model, backend, options=BackendOptions(threads=threads, device="cpu"))
        self.device = self.detector.backend.device_name

    def end_to_end(self, images: Images, budget: Budget) -> list[float]:
        return measure(lambda: self.detector.predict_batch(images), budget)

    def backend_only(self, images: Images, budget: Budget) -> list[float]:
        # The same batch the e2e path would build, made once: only the backend call is inside the loop.
        batch, _ = preprocess_batch(images, self.detector.input_shape, self.detector.input_dtype)
        batch = np.ascontiguousarray(batch)
        return measure(lambda: self.detector.backend.run(batch), budget)

    def close(self) -> None:
        self.detector.close()


class UltralyticsRunner:
    """The baseline: `YOLO(path).predict(list_of_images)`, Ultralytics' own pre/post-processing and session.

    Backend-only time is Ultralytics' own profiler reading (`Results.speed["inference"]`, per image, so x batch),
    collected during the end-to-end loop: its predictor has no public way to call the bare model on a ready batch.
    """

    def __init__(self, name: str, model: Path, size: int, threads: int) -> None:
        import torch
        from ultralytics import YOLO

        # The .pt model runs on torch's intra-op pool: give it the same thread count as the other runners.
        # (The ONNX baseline's session uses ONNX Runtime's default, which is one thread per physical core.)
        torch.set_num_threads(threads)
        self.name = name
        self.size = size
        self.model = YOLO(str(model), task="detect")
        self._inference_ms: list[float] = []
        self._by_batch: dict[int, list[float]] = {}

    def _predict(self, bgr: list[Any]) -> None:
        results = self.model.predict(bgr, imgsz=self.size, conf=0.25, iou=0.7, device="cpu", verbose=False)
        self._inference_ms.append(float(results[0].speed["inference"]) * len(bgr))

    def end_to_end(self, images: Images, budget: Budget) -> list[float]:
        # Ultralytics takes numpy images as BGR (OpenCV order): convert outside the timed loop.
        bgr = [np.ascontiguousarray(img[..., ::-1]) for img in images]
        self._inference_ms = []
        samples = measure(lambda: self._predict(bgr), budget)
        self._by_batch[len(images)] = self._inference_ms[-len(samples) :]
        return samples

    def backend_only(self, images: Images, budget: Budget) -> list[float]:
        if len(images) not in self._by_batch:
            self.end_to_end(images, budget)
        return self._by_batch[len(images)]

    def close(self) -> None:
        self.model = None


