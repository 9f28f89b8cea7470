"""Test doubles for the model the service serves (`api.model.slot.DetectorLike`): `FakeDetector` stands in for one
without any model file, `PassThrough` wraps a real one so a test can watch or slow down what it does."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from api.model.slot import DetectorLike
from detector.runtime import Detections, Timings


class FakeDetector:
    """A model without a model. Answers no boxes, or with `echo` one box per image whose score is the image's
    top-left value / 255 (so results can be matched to the requests they answer). Before answering it waits for
    `gate` (at most 5 s) and sleeps `delay_s`; with `fail` it raises that instead. `entered` is set when a call
    begins (a test waits on it to look at the server while inference runs). Records each call as
    `(images, conf, iou, max_det)` and whether, and on which thread, it was closed. `describe()` is
    `{name, version, backend: "fake", **info}`."""

    max_batch: int | None = None

    def __init__(
        self,
        name: str = "fake",
        version: str = "1",
        *,
        info: dict[str, Any] | None = None,
        echo: bool = False,
        delay_s: float = 0.0,
        gate: threading.Event | None = None,
        fail: Exception | None = None,
    ) -> None:
        self.name, self.version, self.info = name, version, info or {}
        self.echo, self.delay_s, self.gate, self.fail = echo, delay_s, gate, fail
        self.calls: list[tuple[int, float, float, int]] = []
        self.class_confs: list[dict[int, float]] = []  # each call's conf_per_class ({} for none)
        self.closed = False
        self.closed_on: str | None = None
        self.entered = threading.Event()

    def predict_batch(
        self,
        images: Sequence[npt.NDArray[np.uint8]],
        conf: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
        multi_label: bool = False,
        timings: Timings | None = None,
        conf_per_class: Mapping[int, float] | None = None,
    ) -> list[Detections]:
        self.entered.set()
        if self.fail is not None:
            raise self.fail
        if self.gate is not None:
            self.gate.wait(5)
        time.sleep(self.delay_s)
        self.calls.append((len(images), conf or 0, iou or 0, max_det or 0))
        self.class_confs.append(dict(conf_per_class or {}))
        if not self.echo:
            return [Detections.empty() for _ in images]
        return [
            Detections(np.zeros((1, 4), np.float32), np.array([img[0, 0, 0] / 255], np.float32), np.zeros(1, np.int64))
            for img in images
        ]

    def warmup(self, runs: int = 2) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "backend": "fake", **self.info}

    def close(self) -> None:
        self.closed = True
        self.closed_on = threading.current_thread().name


class PassThrough:
    """A real detector, every call passed through to it; subclasses override the calls they watch or change."""

    def __init__(self, inner: DetectorLike) -> None:
        self.inner = inner
        self.max_batch = inner.max_batch

    def predict_batch(self, images: Sequence[npt.NDArray[np.uint8]], *args: Any, **kwargs: Any) -> list[Detections]:
        return self.inner.predict_batch(images, *args, **kwargs)

    def warmup(self, runs: int = 2) -> None:
        self.inner.warmup(runs)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def close(self) -> None:
        self.inner.close()
