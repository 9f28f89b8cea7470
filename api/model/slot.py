"""The model currently served, swappable while requests run.

Workers borrow the current model for one backend call (`slot.use()`); `swap` installs a new one atomically and
retires the old one, which is closed only when the last borrower gives it back. So a reload never interrupts a
batch, and no batch ever runs on a closed model.

Closing happens on the slot's own "model-closer" thread, never on the thread that gave the model back: the last
borrower is a model worker, and closing a TensorRT engine (freeing device memory, joining its CUDA owner thread)
there would stall every request queued behind it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from detector.runtime import Detections, Timings

log = logging.getLogger("api")
Runner = Callable[[Callable[[], None]], object]  # runs a close somewhere (the closer thread's submit)


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
        conf_per_class: Mapping[int, float] | None = None,
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
        self._closed = False
        self._runner: Runner | None = None
        self._lock = threading.Lock()

    def one_thread(self, load: bool, warm_for: tuple[int, int] | None = None) -> DetectorLike | None:
        """The detector's one-thread twin (`Detector.one_thread`: loaded with `load`, kept and closed with it), or
        None where it has none (another backend; the wrappers tests serve)."""
        one_thread = getattr(self.detector, "one_thread", None)
        twin: DetectorLike | None = one_thread(load=load, warm_for=warm_for) if one_thread is not None else None
        return twin

    def _borrow(self) -> None:
        with self._lock:
            self._refs += 1

    def _give_back(self) -> None:
        with self._lock:
            self._refs -= 1
            close = self._retired and self._refs == 0
        if close:
            self._schedule_close()

    def retire(self, runner: Runner | None = None) -> None:
        """No new borrowers will come; close when idle (now, or when the last borrower is done), through `runner`
        (default: on the calling thread)."""
        with self._lock:
            self._retired = True
            self._runner = runner
            close = self._refs == 0
        if close:
            self._schedule_close()

    def _schedule_close(self) -> None:
        if self._runner is not None:
            try:
                self._runner(self._close)
                return
            except RuntimeError:  # the closer already shut down (process exit): close here rather than leak
                pass
        self._close()

    def _close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.detector.close()
        except Exception:  # a failing close must not take the closer thread (or a reload) down with it
            log.exception("closing the retired model %s failed", self.source)


class ModelSlot:
    def __init__(self) -> None:
        self._current: LoadedModel | None = None
        self._lock = threading.Lock()
        self._closer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-closer")

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
            old.retire(self._closer.submit)
        return old

    def wait_closed(self) -> None:
        """Block until every close handed to the closer so far has run (tests; shutdown)."""
        self._closer.submit(lambda: None).result()

    def shutdown(self) -> None:
        """Empty the slot and wait for the retired models to be closed."""
        self.swap(None)
        self._closer.shutdown(wait=True)
