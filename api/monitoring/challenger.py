"""The shadow challenger in a process of its own, at the lowest CPU priority.

Why not a thread of the server: Python threads share one interpreter lock. A low-priority thread that holds it
(pre- and post-processing are Python) and is then preempted in favour of other work keeps every request thread
waiting for the lock: priority inversion. Measured on a shared 2-vCPU machine under heavy load from other
processes (benchmarks/shadow_overhead.py, docs/shadow.md), `/predict` p50 at c=1 rose 115 % with the challenger in
a nice-19 thread, 39 % in a normal thread, 56 % in a nice-19 process and 30 % in a SCHED_IDLE process. In its own
process the challenger shares no lock with the server, and the idle scheduling class (set for the whole process
before any library starts a thread) lets the kernel give it only CPU time nobody else wants; when there is none,
its queue fills and images are shed.

The parent side (`ChallengerProcess`) looks like any loaded detector (`api.model.slot.DetectorLike`), so the
shadow (api/monitoring/shadow.py) and the registry wrapper (api/model/registry.py) use it unchanged. One image at a
time goes over a pipe; the detections come back.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from api.model.slot import DetectorLike
from detector.config import Config
from detector.errors import DetectorError, ModelLoadError
from detector.runtime import Detections, Timings
from detector.runtime.metadata import read_onnx_metadata

START_TIMEOUT_S = 600.0  # loading and warming up a large model (or compiling OpenVINO shapes) on a busy CPU
NICE = 19


def _child(conn: Connection, config: dict[str, Any], model_path: str, backend: str) -> None:
    """The challenger process: load, warm up, say ready (or why not), then answer images until told to stop."""
    _idle_priority()
    try:
        from api.service import default_detector_factory

        detector = default_detector_factory(Config.model_validate(config))(model_path, backend)
        detector.warmup()
        conn.send(("ready", detector.describe()))
    except Exception as exc:
        # The library's own errors say what is wrong in their message; others need their type to make sense.
        conn.send(("error", str(exc) if isinstance(exc, DetectorError) else f"{type(exc).__name__}: {exc}"))
        return
    try:
        while True:
            request = conn.recv()
            if request is None:
                return
            image, conf, iou, max_det, conf_per_class = request
            try:
                answer = detector.predict_batch(
                    [image], conf=conf, iou=iou, max_det=max_det, conf_per_class=conf_per_class
                )[0]
                conn.send(("ok", answer))
            except Exception as exc:
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
    except (EOFError, OSError, KeyboardInterrupt):  # the server went away
        return
    finally:
        detector.close()


def _idle_priority() -> None:
    """Run only on CPU time nobody else wants: Linux's SCHED_IDLE policy (a normal task that wakes up preempts it at
    once, where nice 19 still gets a slice and delays it), else nice 19. Called before the runtime starts its
    threads, which inherit it."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed: nice below
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return
    with contextlib.suppress(OSError):  # not allowed either: the process boundary alone still removes the lock
        os.nice(NICE)


class ChallengerProcess:
    """A detector running in a child process (spawned: no inherited threads or locks)."""

    max_batch: int | None = 1

    def __init__(self, config: Config, model_path: str, backend: str) -> None:
        # A missing file or one that is not a model fails here, in milliseconds, not after a process start.
        if Path(model_path).suffix.lower() == ".onnx":
            read_onnx_metadata(model_path)
        elif not Path(model_path).is_file():
            raise ModelLoadError(f"model file not found: {model_path}")
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_child, args=(child, config.model_dump(), model_path, backend), name="shadow-challenger", daemon=True
        )
        self._proc.start()
        child.close()
        if not self._conn.poll(START_TIMEOUT_S):
            self.close()
            raise ModelLoadError(f"the challenger process did not start within {START_TIMEOUT_S:g} s")
        status, payload = self._receive()
        if status != "ready":
            self.close()
            raise ModelLoadError(str(payload))
        self._info: dict[str, Any] = payload

    def _receive(self) -> tuple[str, Any]:
        try:
            status, payload = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise ModelLoadError(f"the challenger process exited (code {self._proc.exitcode})") from exc
        return str(status), payload

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
        out = []
        for image in images:
            self._conn.send((image, conf, iou, max_det, dict(conf_per_class) if conf_per_class else None))
            status, payload = self._receive()
            if status != "ok":
                raise RuntimeError(payload)
            out.append(payload)
        return out

    def warmup(self, runs: int = 2) -> None:
        """Done in the child before it said ready."""

    def describe(self) -> dict[str, Any]:
        return dict(self._info)

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # the child already gone, or the pipe closed
            self._conn.send(None)
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._conn.close()


def challenger_loader(config: Config) -> Callable[[str, str], DetectorLike]:
    """`(model_path, backend) -> ChallengerProcess`: the shadow's loader (a `DetectorFactory`)."""

    def load(model_path: str, backend: str) -> DetectorLike:
        return ChallengerProcess(config, model_path, backend)

    return load
