"""The model currently served, swappable while requests run.

Workers borrow the current model for one backend call (`slot.use()`); `swap` installs a new one atomically and
retires the old one, which is closed only when the last borrower gives it back. So a reload never interrupts a
batch, and no batch ever runs on a closed model.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from detector.runtime import Detections, Timings


class DetectorLike(Protocol):
    """What the service needs from a model: `detector.runtime.Detector` satisfies it; tests wrap it."""

    max_batch: int | None

    def predict_batch(
        self,
        images: Sequence[npt.NDArray[np.uint8]],
        conf: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
        multi_label: bool = False,
        timings: Timings | None = None,
    ) -> list[Detections]: ...

    def warmup(self, runs: int = 2) -> None: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class LoadedModel:
    """A warmed-up detector plus its `describe()` (computed once: it is in every response)."""

    def __init__(self, detector: DetectorLike, source: str) -> None:
        self.detector = detector
        self.info: dict[str, Any] = detector.describe()
        self.source = source  # the path it was loaded from (logged, not exposed over HTTP)
        self._refs = 0
        self._retired = False
        self._lock = threading.Lock()

    def _borrow(self) -> None:
        with self._lock:
            self._refs += 1

    def _give_back(self) -> None:
        with self._lock:
            self._refs -= 1
            close = self._retired and self._refs == 0
        if close:
            self.detector.close()

    def retire(self) -> None:
        """No new borrowers will come; close now if idle, else when the last borrower is done."""
        with self._lock:
            self._retired = True
            close = self._refs == 0
        if close:
            self.detector.close()


class ModelSlot:
    def __init__(self) -> None:
        self._current: LoadedModel | None = None
        self._lock = threading.Lock()

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    @contextmanager
    def use(self) -> Iterator[LoadedModel]:
        """Borrow the current model; it stays open until the `with` block ends, even if swapped meanwhile."""
        with self._lock:
            model = self._current
            if model is None:
                raise RuntimeError("no model loaded")  # routes check readiness first; this is a bug guard
            model._borrow()
        try:
            yield model
        finally:
            model._give_back()

    def swap(self, new: LoadedModel | None) -> LoadedModel | None:
        """Install `new` (None: empty the slot) and retire the previous model; returns it."""
        with self._lock:
            old, self._current = self._current, new
        if old is not None:
            old.retire()
        return old
