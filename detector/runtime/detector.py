"""`Detector` = shared pre-processing -> a backend -> shared post-processing, for one image or a batch.

Thread-safety: `predict*` may be called from several threads at once. Backends that declare `thread_safe = False`
are serialised by a lock here; the service instead gives each worker its own context (see api/inference/batching.py).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from detector.errors import InvalidInputError, ModelLoadError
from detector.runtime import backends, precision
from detector.runtime.backends.base import Backend, BackendOptions, InputLease
from detector.runtime.classes import resolve_class_conf
from detector.runtime.detections import Detections
from detector.runtime.engines import read_sidecar
from detector.runtime.metadata import ModelMetadata, read_onnx_metadata
from detector.runtime.postprocess import postprocess
from detector.runtime.precision import PrecisionChoice
from detector.runtime.preprocess import (
    LetterboxInfo,
    check_image,
    letterbox_batch,
    letterbox_params,
    preprocess_batch,
)
from detector.runtime.tiling import Tiling, crops, merge_tiles

log = logging.getLogger(__name__)


@dataclass
class Timings:
    """Milliseconds spent per stage of the last call (summed over backend chunks)."""

    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "preprocess": round(self.preprocess_ms, 3),
            "inference": round(self.inference_ms, 3),
            "postprocess": round(self.postprocess_ms, 3),
        }


DEFAULT_CONF = 0.25  # Ultralytics' predict default; the fallback for classes without a threshold of their own
_BATCH_PIXELS = 8 * 640 * 640  # network input pixels one backend call may take (`Detector.images_per_call`)


class Detector:
    def __init__(
        self,
        backend: Backend,
        metadata: ModelMetadata,
        conf: float | None = None,
        iou: float = 0.7,
        max_det: int = 300,
        rect: bool = True,
        class_thresholds: bool | None = None,
    ) -> None:
        self.backend = backend
        self.metadata = metadata
        # Set by `load` when the precision was chosen on this CPU (`inference.openvino.precision: auto|int8`).
        self.precision_choice: PrecisionChoice | None = None
        self.conf, self.iou, self.max_det = _check_thresholds(DEFAULT_CONF if conf is None else conf, iou, max_det)
        # The per-class thresholds applied when a call gives no `conf`: the model's own (export.thresholds), with
        # `conf` for classes that have none. By default only when no `conf` was given here: `Detector.load(p,
        # conf=0.1)` means 0.1 for every class, as it does for Ultralytics. The service passes both (its
        # inference.conf is the fallback of inference.class_thresholds).
        use = conf is None if class_thresholds is None else class_thresholds
        self.class_conf: dict[int, float] = dict(metadata.class_conf) if use else {}
        self.input_shape = self._resolve_input_shape()
        # Rectangular inference (as Ultralytics' predict does): where the model accepts any height and width, a
        # batch is letterboxed to the smallest stride-multiple rectangle holding it, not the full square. Same
        # scale, less padding: a 4:3 photo at 640 px runs on 640x480, about 25% less compute.
        spec = backend.input_spec.shape
        self.rect = rect and spec[2] < 0 and spec[3] < 0
        self.input_dtype = backend.input_spec.dtype
        self.max_batch = self._resolve_max_batch()
        # Most images one backend call takes when the backend sets no limit (CPUs, a dynamic batch): the activations
        # grow with the batch, 64 tiles of 640 px in one call took 1.0 GB (OpenVINO INT8) and 1.9 GB (ONNX Runtime)
        # of memory above the loaded model, 16 of them 0.26 and 0.47 GB (2-core AMD host). Sized from the model's
        # input, so a 256 px model still runs 36 tiles at once (batches beyond 9 gain under 5 % a tile there).
        self.images_per_call = max(1, _BATCH_PIXELS // (self.input_shape[0] * self.input_shape[1]))
        self._lock = None if backend.thread_safe else threading.Lock()
        self._twin_lock = threading.Lock()
        self._twin: Detector | object | None = _NOT_LOADED  # `one_thread`'s detector, once loaded

    @classmethod
    def load(
        cls,
        model_path: str | Path,
        backend: str = "auto",
        options: BackendOptions | None = None,
        conf: float | None = None,
        iou: float = 0.7,
        max_det: int = 300,
        rect: bool = True,
        class_thresholds: bool | None = None,
    ) -> Detector:
        """Read the model's metadata, load it on `backend` (or the fastest available with "auto"). Without `conf`,
        the model's per-class thresholds apply (DEFAULT_CONF for classes without one); with it, `conf` applies to
        every class unless `class_thresholds=True`."""
        path = Path(model_path)
        choice = None
        if options is not None and options.openvino.precision in ("auto", "int8"):
            chosen = backend if backend != "auto" else backends.first_available()
            if chosen == "openvino" and path.suffix.lower() == ".onnx":
                choice = precision.choose(path, options)  # measures only the first time per CPU and files
                log.info("precision %s (%s): %s", choice.precision, choice.reason, choice.model_path)
                path, options = choice.model_path, choice.options(options)
        metadata = _read_metadata(path)
        loaded = backends.create(backend, path, options.pinned() if options is not None else None)
        try:
            log.info("loaded %s on %s (%s)", path, loaded.name, loaded.device_name)
            detector = cls(
                loaded, metadata, conf=conf, iou=iou, max_det=max_det, rect=rect, class_thresholds=class_thresholds
            )
            detector.precision_choice = choice
            return detector
        except BaseException:
            # The backend exists but the Detector will not (input shape vs metadata, bad thresholds): release what
            # it holds now. For TensorRT that is an owner thread, a CUDA context and device memory.
            loaded.close()
            raise

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def _resolve_input_shape(self) -> tuple[int, int]:
        shape = self.backend.input_spec.shape
        if len(shape) != 4 or shape[1] not in (3, -1):
            raise ModelLoadError(f"model input must be (B, 3, H, W), got {shape}")
        h, w = shape[2], shape[3]
        if h > 0 and w > 0 and (h, w) != self.metadata.imgsz:
            raise ModelLoadError(
                f"model input size {(h, w)} disagrees with its metadata imgsz {self.metadata.imgsz}; re-export it"
            )
        return self.metadata.imgsz

    def _resolve_max_batch(self) -> int | None:
        static = self.backend.input_spec.shape[0]
        limits = [b for b in (self.backend.max_batch, static if static > 0 else None) if b]
        return min(limits) if limits else None

    def warmup(self, runs: int = 2) -> None:
        """Run dummy images so lazy allocation and kernel selection happen before the first real request."""
        dummy = np.full((*self.input_shape, 3), 114, np.uint8)
        for _ in range(runs):
            self.predict_batch([dummy])

    def predict(
        self,
        image: npt.NDArray[np.uint8],
        conf: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
        conf_per_class: Mapping[str, float] | Mapping[int, float] | None = None,
        tiles: Tiling | None = None,
        timings: Timings | None = None,
    ) -> Detections:
        """Detect objects in one RGB `(H, W, 3)` uint8 image; with `tiles`, in overlapping tiles of it, run as one
        batch (in backend calls of at most `images_per_call`) and merged (detector/runtime/tiling.py)."""
        options: dict[str, Any] = {"conf": conf, "iou": iou, "max_det": max_det, "conf_per_class": conf_per_class}
        if tiles is None:
            return self.predict_batch([image], timings=timings, **options)[0]
        grid = tiles.grid(image.shape[1], image.shape[0])
        views = crops(check_image(image), grid)
        if tiles.full_image:
            views.append(image)
        found = self.predict_batch(views, timings=timings, **options)
        whole = found.pop() if tiles.full_image else None
        return merge_tiles(found, grid, tiles, self.max_det if max_det is None else max_det, whole)

    def predict_batch(
        self,
        images: Sequence[npt.NDArray[np.uint8]],
        conf: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
        multi_label: bool = False,
        timings: Timings | None = None,
        conf_per_class: Mapping[str, float] | Mapping[int, float] | None = None,
    ) -> list[Detections]:
        """Detect objects in RGB uint8 images of any sizes; one `Detections` per image, in order.

        Batches larger than the backend accepts are split. `multi_label` lets one box carry several classes
        (used for mAP evaluation, as Ultralytics' validator does). `timings`, when given, receives stage times.
        Confidence thresholds: without `conf`, the model's per-class thresholds (`class_conf`) over the default
        conf; a `conf` replaces both, for every class; `conf_per_class` (class names or ids -> conf) then replaces
        the threshold of the classes it names (InvalidInputError for an unknown class).
        """
        class_conf = dict(self.class_conf) if conf is None else {}
        conf, iou, max_det = _check_thresholds(
            self.conf if conf is None else conf,
            self.iou if iou is None else iou,
            self.max_det if max_det is None else max_det,
        )
        if conf_per_class:
            class_conf |= resolve_class_conf(conf_per_class, self.metadata.names)
        if len(images) == 0:
            return []
        timings = timings if timings is not None else Timings()
        step = self.max_batch or self.images_per_call
        results: list[Detections] = []
        for start in range(0, len(images), step):
            chunk = images[start : start + step]
            t0 = time.perf_counter()
            shape = self.batch_shape(chunk) if self.rect else self.input_shape
            lease = self.backend.lend_input((len(chunk), 3, *shape))
            if lease is None:
                batch, infos = preprocess_batch(chunk, shape, self.input_dtype)
                t1 = time.perf_counter()
                output = self._run(batch)
            else:
                output, infos, t1 = self._run_lent(lease, chunk)
            t2 = time.perf_counter()
            results += postprocess(
                output,
                infos,
                self.metadata.names,
                self.metadata.head,
                conf,
                iou,
                max_det,
                multi_label,
                class_conf=class_conf or None,
            )
            t3 = time.perf_counter()
            timings.preprocess_ms += (t1 - t0) * 1e3
            timings.inference_ms += (t2 - t1) * 1e3
            timings.postprocess_ms += (t3 - t2) * 1e3
        return results

    def batch_shape(self, images: Sequence[npt.NDArray[np.uint8]]) -> tuple[int, int]:
        """The network input (h, w) for `images` in rect mode: each image's letterboxed size rounded up to the
        stride, maximised over the batch (never more than the model's square input)."""
        height, width = self.input_shape
        stride = self.metadata.stride
        rows, cols = 0, 0
        for image in images:
            h0, w0 = check_image(image).shape[:2]
            (new_w, new_h), _ = letterbox_params((h0, w0), (height, width))
            rows = max(rows, new_h + (height - new_h) % stride)
            cols = max(cols, new_w + (width - new_w) % stride)
        return rows, cols

    def _run(self, batch: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        if self._lock is None:
            return self.backend.run(batch)
        with self._lock:
            return self.backend.run(batch)

    def _run_lent(
        self, lease: AbstractContextManager[InputLease], chunk: Sequence[npt.NDArray[np.uint8]]
    ) -> tuple[npt.NDArray[np.float32], list[LetterboxInfo], float]:
        """Letterbox straight into the memory the backend uploads from (a TensorRT slot's page-locked buffer), then
        run it: output, letterbox infos, and when pre-processing ended (it includes waiting for a free slot)."""
        with self._lock or nullcontext(), lease as host:
            infos = letterbox_batch(chunk, host.array)
            t1 = time.perf_counter()
            return host.run(), infos, t1

    def describe(self) -> dict[str, Any]:
        """What `/model` and `detector predict` report about the loaded model."""
        m = self.metadata
        return {
            "name": m.architecture or Path(self.backend.model_path).stem,
            "version": m.version,
            "backend": self.backend.name,
            "device": self.backend.device_name,
            "precision": self.backend.precision or m.precision,
            "input_size": list(self.input_shape),
            "names": {str(k): v for k, v in m.names.items()},
            "head": m.head,
            "rect": self.rect,
            "max_batch": self.max_batch,
            "slots": self.backend.slots,
            "singles_alone": self.backend.singles_alone,
            "dataset_version": m.dataset_version,
            "source_run_id": m.source_run_id,
            # The thresholds a call without `conf` applies (per class by name, `conf` for the others) and their source.
            "conf": self.conf,
            "class_conf": {m.names.get(c, str(c)): v for c, v in sorted(self.class_conf.items())},
            "class_conf_source": "model metadata" if self.class_conf else "config",
            "class_conf_rule": m.class_conf_rule if self.class_conf else "",
            "precision_choice": self.precision_choice.info() if self.precision_choice else None,
        }

    def one_thread(self, load: bool = True, warm_for: tuple[int, int] | None = None) -> Detector | None:
        """This detector (model, thresholds, classes) on its backend's `one_thread` variant, or None where the backend
        has none. Loaded by the first call (the model again: about 0.25 s), then kept and closed with this detector;
        thread-safe. `warm_for=(width, height)`: its first call made on a blank image of that size, so the model is
        compiled for the letterbox such images get (0.3 s) before a caller times it. `load=False`: only if loaded."""
        with self._twin_lock:
            if self._twin is _NOT_LOADED and load:
                backend = self.backend.one_thread()
                twin = None
                if backend is not None:
                    twin = copy.copy(self)
                    twin.backend = backend
                    twin._lock = None if backend.thread_safe else threading.Lock()
                    twin._twin_lock, twin._twin = threading.Lock(), None
                    if warm_for is not None and min(warm_for) > 0:
                        try:
                            twin.predict(np.zeros((warm_for[1], warm_for[0], 3), np.uint8))
                        except BaseException:
                            backend.close()  # not kept (the next call loads again): nothing would close it
                            raise
                self._twin = twin
            return self._twin if isinstance(self._twin, Detector) else None

    def close(self) -> None:
        with self._twin_lock:
            twin, self._twin = self._twin, None
        if isinstance(twin, Detector):
            twin.close()
        self.backend.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_NOT_LOADED = object()


def _read_metadata(path: Path) -> ModelMetadata:
    """From the ONNX itself, or for a TensorRT `.engine` from its verified sidecar (engines carry no metadata)."""
    if path.suffix.lower() != ".engine":
        return read_onnx_metadata(path)
    return read_sidecar(path).model_metadata


def _check_thresholds(conf: float, iou: float, max_det: int) -> tuple[float, float, int]:
    if not 0.0 <= conf <= 1.0:
        raise InvalidInputError(f"conf must be in [0, 1], got {conf}")
    if not 0.0 <= iou <= 1.0:
        raise InvalidInputError(f"iou must be in [0, 1], got {iou}")
    if int(max_det) < 1:
        raise InvalidInputError(f"max_det must be >= 1, got {max_det}")
    return float(conf), float(iou), int(max_det)
