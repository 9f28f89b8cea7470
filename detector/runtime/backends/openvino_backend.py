"""OpenVINO backend: the ONNX file compiled for the CPU, one static-shape compilation per input shape.

Why static shapes: OpenVINO's CPU plugin runs a model with dynamic height/width through shape-agnostic kernels and
re-plans memory on every call; the same model reshaped to the exact input shape (what Ultralytics' own OpenVINO
export does, at one fixed size) is markedly faster (measured by `benchmarks/`: see README, Performance). Our
`Detector` letterboxes to the smallest stride-multiple rectangle, so a service sees a handful of distinct shapes
(one per aspect ratio); each gets its own compiled model, kept in a small LRU cache
(`inference.openvino.shape_cache`), and a shape seen for the first time pays one compilation. A batch (an image's
tiles) gets one model per input size with the batch size left dynamic (`cache_key`), whatever its size.

Adaptive concurrency (`inference.openvino.hint: adaptive`, opt-in): OpenVINO's LATENCY hint runs one request on
every core (fastest alone); its THROUGHPUT hint splits the cores into streams that each run a request (more images
per second when several wait, slower alone). Measured on the 2-core host with the peers photos and the INT8 model:
LATENCY 23 ms at c=1 and about 45 req/s at c=4, two THROUGHPUT streams 33 ms at c=1 and 43-51 req/s. Neither is
right for a service whose load comes and goes, so each shape gets both, chosen per call: a call that starts while
another is running (the service runs `slots` model threads, one per stream) takes the throughput model, a call alone
the latency one. The throughput model of a shape is compiled in the background the first time it is wanted, so no
request waits for a compilation it did not need; until it is ready the latency model serves. In-process, two
threads on the 640 px INT8 model ran 59 images/s against 45 on the latency model alone; but the HTTP service on the
same 2 cores lost with it at every concurrency (c=4: 41 against 51 req/s; c=1: 23.1 against 21.7 ms), since decoding
and HTTP need the cores the streams take. So it is not the default; try it where cores outnumber that work. (That
was with the streams pinned to cores, OpenVINO's default; they are unpinned now, below, and `adaptive` was not
measured again over HTTP.)

`hint: auto` (what configs/inference.yaml ships) is adaptive with `singles_alone`: the service runs a single image
or a batch item with no other call in flight, so it gets the latency model and every core as with `hint: latency`,
and lets video frames overlap on the throughput streams only while no single image has come for a second, and
single images beside each other only while a queue of them waits (api/inference/batching.py). Video gains what the
streams give, single images lose nothing (measured in docs/performance.md).

A batch that runs alone (an image's tiles, under adaptive or auto) is cut in equal parts, one on each stream of
the throughput model, once that model exists for its input size (`splits_over_streams`, `_infer_split`): a batch
finishes sooner that way than as one request on every core.

The throughput hint alone (what a clip read from a file gets from `hint: auto`, `BackendOptions.for_clip`) compiles
one model with its streams set explicitly (`throughput_streams`), and the backend has one slot per stream: a clip
keeps a frame on each, the service runs a model thread on each.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from detector.errors import InvalidInputError, ModelLoadError
from detector.runtime.backends.base import Backend, BackendOptions, TensorSpec
from detector.runtime.preprocess import PIXEL_SCALE

try:
    import openvino as ov
except ImportError as exc:
    raise ImportError("openvino is not installed: install the `openvino` extra (uv sync --extra openvino)") from exc

_OV_DTYPES = {"f32": np.float32, "f16": np.float16, "u8": np.uint8}

log = logging.getLogger(__name__)


def _spec(port: Any) -> TensorSpec:
    pshape = port.get_partial_shape()
    shape = tuple(d.get_length() if d.is_static else -1 for d in pshape)
    dtype = _OV_DTYPES.get(port.get_element_type().get_type_name(), np.float32)
    return TensorSpec(port.get_any_name(), shape, np.dtype(dtype))


def _with_uint8_input(model: Any) -> Any:
    """`model` taking uint8 0-255 pixels where it took float32 ones: OpenVINO's own preprocessing converts them and
    multiplies by `PIXEL_SCALE` in the graph, the arithmetic `preprocess_batch` does in numpy, so the network sees
    the same float32 values (outputs equal bit for bit on this project's models, checked by a test).

    Why: the letterbox then writes a quarter of the bytes (no float multiply on the host), and the CPU plugin fuses
    the conversion into its input reorder. Measured on the 2-core AMD EPYC host, letterbox + inference of the peers
    photos, 2 threads, interleaved medians: 640 px INT8 13.09 -> 12.34 ms, 256 px INT8 4.39 -> 4.14 ms, 640 px FP32
    on 1 thread (a video stream) 55.4 -> 53.7 ms. A model whose input is not float32 is left as it is."""
    from openvino.preprocess import PrePostProcessor

    if model.inputs[0].get_element_type() != ov.Type.f32:
        return model
    scale = ov.opset13.constant(np.array(PIXEL_SCALE, np.float32))
    ppp = PrePostProcessor(model)
    ppp.input(0).tensor().set_element_type(ov.Type.u8)
    # A multiply by PIXEL_SCALE, not `scale(255)`: dividing by 255 differs from it in the last bit for 126 of the 256
    # pixel values.
    ppp.input(0).preprocess().convert_element_type(ov.Type.f32).custom(
        lambda node: ov.opset13.multiply(node, scale).output(0)
    )
    return ppp.build()


class _Compiled:
    """One compiled model, with one infer request per calling thread (requests are not thread-safe), and for a
    model with streams one per stream per thread, to split a batch over them."""

    def __init__(self, compiled: Any, streams: int = 1) -> None:
        self.compiled = compiled
        self.streams = streams
        self._local = threading.local()
        self.requests = 0  # infer requests created: how many threads have used this model
        self.splits = 0  # batches split over the streams

    def request(self) -> Any:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
            self.requests += 1
        return request

    def stream_requests(self) -> list[Any]:
        requests: list[Any] | None = getattr(self._local, "streams", None)
        if requests is None:
            requests = self._local.streams = [self.compiled.create_infer_request() for _ in range(self.streams)]
        return requests


class _Shape:
    """The models compiled for one input shape: latency, and (adaptive) throughput once its compilation finished."""

    def __init__(self, latency: _Compiled) -> None:
        self.latency = latency
        self.throughput: _Compiled | None = None
        self.compiling = False
        self.split_asked = False  # a batch of this size came alone before (see `compiled_for`)


def cache_key(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape a model is compiled for: a single image's exactly; a batch's (an image's tiles, a micro-batch) with
    the batch size left dynamic, so one compilation per input size serves every batch size.

    Why: a static model per batch size meant a compilation (0.3 s) and a place in the shape cache for every tile
    count, so tiled images of mixed sizes would push each other and the single images' shapes out of the cache.
    Dynamic in the batch only (not height and width) costs nothing measurable: the 256 px INT8 model on the 2-core
    AMD host, interleaved, dynamic over static per tile at batches 4, 9, 20, 36: 1.03, 0.99, 0.98, 1.01. A single
    image keeps its static model (the dynamic one measured about 8 % slower at batch 1)."""
    return shape if not shape or shape[0] == 1 else (-1, *shape[1:])


def throughput_streams(core: Any, streams: int) -> int:
    """Streams of a throughput model (the `throughput` hint, or adaptive's second model): `streams` when set, else
    half the CPU's stream range (on 2 cores: 2 streams of 1 thread; OpenVINO's THROUGHPUT hint picks the same
    there), at least 2. Set explicitly so the backend knows its slots (one model thread per stream)."""
    if streams:
        return streams
    try:
        upper = int(core.get_property("CPU", "RANGE_FOR_STREAMS")[1])
    except Exception:  # an OpenVINO without the property: the smallest split that still overlaps two requests
        upper = 2
    return max(2, upper // 2)


class OpenVinoBackend(Backend):
    name: ClassVar[str] = "openvino"
    thread_safe: ClassVar[bool] = True

    def __init__(self, model_path: Path, options: BackendOptions) -> None:
        super().__init__(model_path, options)
        if not model_path.is_file():
            raise ModelLoadError(f"model file not found: {model_path}")
        self.core = ov.Core()
        ovo = options.openvino
        # f32 by default: on CPUs with bf16/AMX OpenVINO would otherwise lower precision on its own, and results
        # would drift from the other backends and from the evaluation. bf16 is an explicit, measured opt-in.
        # Adaptive needs threads to split: with a pinned single thread (the shadow challenger) it is plain latency.
        self.adaptive = ovo.hint in ("adaptive", "auto") and options.threads != 1
        # auto: adaptive, with single images run alone by the service (`singles_alone`); `BackendOptions.for_clip`
        # makes it throughput for a clip's frames.
        hint = "latency" if ovo.hint in ("adaptive", "auto") else ovo.hint
        self.config: dict[str, Any] = {
            "PERFORMANCE_HINT": hint.upper(),
            # auto and int8 are resolved before a backend exists (detector/runtime/precision.py); here they mean f32.
            "INFERENCE_PRECISION_HINT": "bf16" if ovo.precision == "bf16" else "f32",
        }
        if options.threads:
            self.config["INFERENCE_NUM_THREADS"] = options.threads
        # Streams need threads to split too: with one thread, throughput is one stream, as OpenVINO would pick.
        streaming = (self.adaptive or hint == "throughput") and options.threads != 1
        self.streams = throughput_streams(self.core, ovo.streams) if streaming else 1
        if hint == "throughput" and streaming:
            self.config["NUM_STREAMS"] = self.streams
        elif ovo.streams and not self.adaptive:
            self.config["NUM_STREAMS"] = ovo.streams
        # Adaptive's streams unpinned: OpenVINO pins stream threads to cores by default, and in the service they
        # share those cores with decoding and the event loop, so a pinned stream waits for its core while the other
        # idles. 2-core AMD host, 640 px INT8, c=8 over HTTP on throughput streams: 1.53 cores busy and 54.7 req/s
        # pinned, 61-64 req/s unpinned (interleaved rounds). The latency model stays pinned: unpinned it lost 1-2 ms
        # at c=1.
        self.throughput_config = {
            **self.config,
            "PERFORMANCE_HINT": "THROUGHPUT",
            "NUM_STREAMS": self.streams,
            "ENABLE_CPU_PINNING": False,
        }
        self._in_flight = 0
        self._flight_lock = threading.Lock()
        self._compiler: ThreadPoolExecutor | None = None
        try:
            # `convert_model`, not `Core.read_model`: only the former applies OpenVINO's offline (MOC)
            # transformations, and without them the CPU plugin (2026.4) miscomputes NNCF's Q/DQ INT8 ONNX (class
            # scores off by up to 0.18 against ONNX Runtime, val mAP halved; measured on the quick model). FP32 models
            # are unaffected either way.
            self.model = ov.convert_model(str(model_path))
        except Exception as exc:  # OpenVINO raises RuntimeError with the parser's message
            raise ModelLoadError(f"openvino cannot load {model_path}: {exc}") from exc
        self.model = _with_uint8_input(self.model)
        self._input = _spec(self.model.inputs[0])
        self._outputs = [_spec(o) for o in self.model.outputs]
        self.cache_size = ovo.shape_cache if -1 in self._input.shape else 0
        self._cache: OrderedDict[tuple[int, ...], _Shape] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._dynamic: _Shape | None = None
        if not self.cache_size:  # a static model, or static reshapes switched off: one compilation as is
            self._dynamic = _Shape(_Compiled(self._compile(self.model)))

    def _compile(self, model: Any, config: dict[str, Any] | None = None) -> Any:
        try:
            return self.core.compile_model(model, "CPU", config or self.config)
        except Exception as exc:
            raise ModelLoadError(f"openvino cannot compile {self.model_path}: {exc}") from exc

    @property
    def precision(self) -> str | None:
        """bf16 when asked to compute in it; else what the model's metadata says (fp32, or int8 for a Q/DQ model)."""
        return "bf16" if self.config["INFERENCE_PRECISION_HINT"] == "bf16" else None

    @property
    def slots(self) -> int:
        """Throughput, adaptive and auto: one model thread per stream, so every stream can be busy under load."""
        return self.streams

    def one_thread(self) -> OpenVinoBackend | None:
        """With streams, the same model on one thread with the latency hint: OpenVINO then runs a call on the thread
        that makes it, where a stream hands it to a thread of its own. On 2 cores beside a decoder that needs most of
        them, the hand-over is what costs: the 256 px INT8 model with a 720p H.264 clip at `vid_stride` 3 ran 169-177
        frames/s one frame at a time this way, against 139-148 one frame at a time on a stream (pinned or not) and
        141-150 two at a time (Intel AMX VM, 2026-12-06); alone, a frame costs the same on either (2.6-2.8 ms)."""
        if self.streams <= 1:
            return None
        ovo = self.options.openvino.model_copy(update={"hint": "latency", "streams": 0})
        return OpenVinoBackend(self.model_path, replace(self.options, threads=1, openvino=ovo))

    @property
    def singles_alone(self) -> bool:
        """`hint: auto`: a single image keeps the latency behaviour (alone, on every core); video frames that
        overlap take the throughput model (api/inference/batching.py)."""
        return self.adaptive and self.options.openvino.hint == "auto"

    def _for_shape(self, shape: tuple[int, ...]) -> _Shape:
        if self._dynamic is not None:
            return self._dynamic
        with self._cache_lock:
            entry = self._cache.get(shape)
            if entry is not None:
                self._cache.move_to_end(shape)
                return entry
        # Compile outside the lock (hundreds of ms): other shapes keep running meanwhile. Two threads meeting a new
        # shape at once may both compile it; the second result is dropped, which is rarer and cheaper than a stall.
        entry = _Shape(_Compiled(self._compile(self._reshaped(shape))))
        with self._cache_lock:
            entry = self._cache.setdefault(shape, entry)
            self._cache.move_to_end(shape)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)  # requests of an evicted model go with it once no thread uses it
        return entry

    def _reshaped(self, shape: tuple[int, ...]) -> Any:
        if self._dynamic is not None:
            return self.model
        model = self.model.clone()
        model.reshape({model.inputs[0]: ov.PartialShape(list(shape))})
        return model

    def compiled_for(self, shape: tuple[int, ...], crowded: bool = False, split: bool = False) -> _Compiled:
        """The compiled model for an input of `shape` (reshaped to its `cache_key`, LRU-cached, or the one dynamic
        model): `crowded` (another call is running) and `split` (a batch alone, to be split over the streams) ask
        for the throughput model, which is used once compiled.

        `split` asks for its compilation only the second time a batch of that input size comes: a one-image
        `detector predict --tile` run would otherwise compile one (0.25 s for the 256 px INT8 model) that it never
        uses, and wait for it at exit."""
        key = cache_key(shape)
        entry = self._for_shape(key)
        if (crowded or split) and self.adaptive:
            if entry.throughput is not None:
                return entry.throughput
            if crowded or entry.split_asked:
                self._compile_throughput(key, entry)
            entry.split_asked = True
        return entry.latency

    def _compile_throughput(self, shape: tuple[int, ...], entry: _Shape) -> None:
        with self._cache_lock:
            if entry.compiling:
                return
            entry.compiling = True
            if self._compiler is None:
                self._compiler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="openvino-compile")

        def compile_() -> None:
            try:
                entry.throughput = _Compiled(self._compile(self._reshaped(shape), self.throughput_config), self.streams)
                log.info("openvino: %d-stream throughput model ready for %s", self.streams, shape)
            except ModelLoadError:  # the latency model keeps serving; it compiled, so this is no reason to fail
                log.warning("openvino: no throughput model for %s; latency mode only", shape, exc_info=True)

        # RuntimeError: closed meanwhile (a reload); the model is going away, there is nothing to compile for.
        with contextlib.suppress(RuntimeError):
            self._compiler.submit(compile_)

    @property
    def cached_shapes(self) -> list[tuple[int, ...]]:
        with self._cache_lock:
            return list(self._cache)

    def run(self, batch: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        if batch.dtype != self._input.dtype:  # OpenVINO would cast [0, 1] floats to uint8 zeros without a word
            raise InvalidInputError(f"this model takes {self._input.dtype} pixels (0-255), got a {batch.dtype} batch")
        with self._flight_lock:
            self._in_flight += 1
            crowded = self._in_flight > 1
        try:
            split = not crowded and self.splits_over_streams(batch.shape[0])
            compiled = self.compiled_for(tuple(batch.shape), crowded, split)
            if split and compiled.streams > 1:
                return self._infer_split(compiled, batch)
            return self._infer(compiled.request(), batch)
        finally:
            with self._flight_lock:
                self._in_flight -= 1

    def splits_over_streams(self, images: int) -> bool:
        """Whether a batch of `images` that runs alone is split over the throughput streams (adaptive and auto).

        Why: one request on every core (the latency model) finishes a batch later than the same batch cut in equal
        parts, one on each stream: the 256 px INT8 model on a 2-core Intel AMX VM, 36 tiles 67.1 -> 62.8 ms, f32
        220 -> 208 ms, batches of 2, 4, 8, 16 3-9 % faster, the 640 px INT8 model 3-7 %. Unequal parts lost (3, 5,
        9, 13 and 17 images 5-24 % slower: the larger part runs last on its own), so only equal ones."""
        return self.adaptive and images >= self.streams > 1 and images % self.streams == 0

    def settle(self, timeout: float = 60.0) -> None:
        """The compiler runs one job at a time in order, so a no-op submitted now ends after every one before it."""
        if self._compiler is not None:
            with contextlib.suppress(RuntimeError):  # closed meanwhile: nothing is compiling any more
                self._compiler.submit(lambda: None).result(timeout)

    def close(self) -> None:
        if self._compiler is not None:
            self._compiler.shutdown(wait=True, cancel_futures=True)

    @staticmethod
    def _infer(request: Any, batch: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        # share_inputs: OpenVINO reads the batch where it lies instead of copying it into the request's own tensor
        # first (a 640x480 image: 0.1 ms a call; 36 tiles of 256 px: 7 MB). `infer` returns when it is done with it.
        request.infer({0: batch}, share_inputs=True)
        # The output tensor's memory is reused by the next infer on this request: copy it out.
        return np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)

    @staticmethod
    def _infer_split(compiled: _Compiled, batch: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """`batch` in equal parts, one on each stream at once; the outputs in the batch's order."""
        requests = compiled.stream_requests()
        started: list[Any] = []
        try:
            for request, part in zip(requests, np.split(batch, len(requests)), strict=True):
                request.start_async({0: part}, share_inputs=True)
                started.append(request)
            for request in started:
                request.wait()  # raises a failed part's error
        finally:
            for request in started:  # none may still read `batch` (shared, not copied) once this returns
                with contextlib.suppress(Exception):
                    request.wait()
        compiled.splits += 1
        # Concatenating copies the outputs out of the requests' tensors, which their next infer reuses.
        return np.concatenate([r.get_output_tensor(0).data for r in requests]).astype(np.float32, copy=False)
