"""What a backend is: load a model file, report its input/output spec, run a batch. Nothing else.

Pre-processing, post-processing and thresholds live in `Detector`, shared by every backend, so a new backend is one
file plus one registry entry (`detector.runtime.backends.REGISTRY`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from detector.config import Config, OpenVinoConfig
from detector.runtime.engines import EngineBuilder, EngineSpec


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]  # -1 marks a dynamic dimension
    dtype: np.dtype[Any]


@dataclass(frozen=True)
class InputLease:
    """Host memory a backend lends for one batch (`Backend.lend_input`): the caller fills `array` (the shape it asked
    for, `input_spec.dtype`, the same pixels `run` takes), then calls `run()`, which returns what `run(array)` would.
    Valid only inside the `with` block that lent it: afterwards the memory belongs to the next call."""

    array: npt.NDArray[Any]
    run: Callable[[], npt.NDArray[np.float32]]


@dataclass(frozen=True)
class BackendOptions:
    """Knobs a backend may honour; each backend documents which it reads."""

    device: str = "auto"  # "cpu", "cuda", "cuda:1", "auto"
    threads: int = 0  # intra-op threads; 0 lets the library decide
    # The TensorRT engine's precision, profile and cache folder (CPU backends always compute in fp32).
    engine: EngineSpec = field(default_factory=EngineSpec)
    # Builds a missing engine (`export.tensorrt.build_engine`), injected by the composition root (the CLI). None: the
    # TensorRT backend loads cached engines only and says how to build one.
    engine_builder: EngineBuilder | None = None
    openvino: OpenVinoConfig = field(default_factory=OpenVinoConfig)  # `inference.openvino`

    def pinned(self) -> BackendOptions:
        """These options computing exactly what they are given: `auto`/`int8` precision (a serving choice that may
        swap the model file, detector/runtime/precision.py) becomes f32, for evaluation and reports."""
        if self.openvino.precision in ("f32", "bf16"):
            return self
        return replace(self, openvino=self.openvino.model_copy(update={"precision": "f32"}))

    def for_clip(self) -> BackendOptions:
        """These options for the frames of a clip read from a file, a queue that never runs dry: OpenVINO's `hint:
        auto` becomes `throughput`, so a frame runs on each stream at once (`video_detect.calls_in_flight`). One
        frame on one core costs less CPU than one frame on two (the 640 px INT8 model on the 2-core AMD host: 23.4
        against 27.1 ms; two threads spend the difference waiting for each other). Any other hint is kept."""
        if self.openvino.hint != "auto":
            return self
        return replace(self, openvino=self.openvino.model_copy(update={"hint": "throughput"}))

    @classmethod
    def from_config(cls, config: Config, engine_builder: EngineBuilder | None = None) -> BackendOptions:
        """Serving options from `inference.*`, engine options from `export.engine.*` (one source for both)."""
        return cls(
            device=config.inference.device,
            threads=config.inference.threads,
            engine=EngineSpec.from_config(config.export.engine),
            engine_builder=engine_builder,
            openvino=config.inference.openvino,
        )


class Backend(ABC):
    """One loaded model on one inference library.

    Contract for `run`: input is a contiguous `(B, 3, H, W)` array of `input_spec.dtype` holding RGB pixels scaled
    to [0, 1] (or, for a uint8 input, the pixel values 0-255: the model normalises them itself); output is the model's
    first output as float32, batch first. `thread_safe` tells `Detector` whether `run` may be called from several
    threads at once; if not, `Detector` serialises calls. `lend_input` is an optional zero-copy variant of `run`.
    """

    name: ClassVar[str]
    thread_safe: ClassVar[bool] = True

    def __init__(self, model_path: Path, options: BackendOptions) -> None:
        self.model_path = model_path
        self.options = options

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        """Whether this backend can run on this machine, and if not, why (for `auto` and error messages)."""
        return True, ""

    # Set by each backend's loader: what the loaded model takes and returns.
    _input: TensorSpec
    _outputs: list[TensorSpec]

    @property
    def input_spec(self) -> TensorSpec:
        return self._input

    @property
    def output_specs(self) -> list[TensorSpec]:
        return self._outputs

    @property
    def max_batch(self) -> int | None:
        """Largest batch one `run` accepts; None when unbounded. Larger batches are split by `Detector`."""
        return None

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def slots(self) -> int:
        """How many `run` calls this backend executes at once (TensorRT: one per execution context). The service
        runs that many model threads by default, so every slot can be busy (`inference.server.workers: 0`)."""
        return 1

    @property
    def singles_alone(self) -> bool:
        """Whether the service should run a single image (and a batch item) with no other call in flight (OpenVINO's
        `hint: auto`: on its latency model, every core), its other slots running only video frames."""
        return False

    def one_thread(self) -> Backend | None:
        """This model loaded again to run each call on the calling thread alone (one thread, no streams), for a loop
        whose other stages need the other cores: a clip whose decoding costs more than its detection
        (`detector.runtime.video_detect`). None, the default, where that is how this backend runs already (one
        slot) or where it would not help (a GPU). The caller closes it."""
        return None

    @property
    def failure(self) -> str | None:
        """Why this backend broke at run time and cannot recover in this process (a CUDA fault); None while fine."""
        return None

    @property
    def precision(self) -> str | None:
        """The precision the loaded model really computes in, where the backend knows it better than the model's
        metadata (a TensorRT engine: its sidecar); None means the metadata's."""
        return None

    @abstractmethod
    def run(self, batch: npt.NDArray[Any]) -> npt.NDArray[np.float32]: ...

    def lend_input(self, shape: tuple[int, ...]) -> AbstractContextManager[InputLease] | None:
        """Optional hook for backends that upload from memory of their own (TensorRT: a page-locked buffer per
        execution slot): a context manager lending that memory as a `shape` `(B, 3, H, W)` array, so the caller
        letterboxes straight into it, and holding what it guards (the slot) until the block exits. `B` is at most
        `max_batch`. None, the default: this backend takes the caller's array through `run`."""
        return None

    def settle(self, timeout: float = 60.0) -> None:  # noqa: B027 - optional hook, most backends start nothing
        """Wait (at most `timeout` s) for work this backend started in the background (OpenVINO: a throughput
        model's compilation), so what follows is timed on the models it will keep using. A benchmark's hook."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends free on garbage collection
        """Release native resources. Idempotent."""
