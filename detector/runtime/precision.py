"""Hardware-aware precision on the CPU (`inference.openvino.precision: auto`, the default for serving).

Which precision is fastest depends on the CPU: on the project's AMD EPYC (AVX512-VNNI and -BF16) the INT8 model
ran at 18.4 ms, bf16 23.5 ms and f32 38.0 ms (benchmarks/peers.py, 640 px); on an Intel Xeon with AMX, bf16 is as
fast as INT8 (issue 26). So the choice is measured, not assumed, once per CPU model and set of model files:

- candidates: f32 (the model as exported); bf16 where OpenVINO says this CPU computes it natively and the export's
  bf16 accuracy gate passed (`<model dir>/int8/gates.json`, written by `detector export int8`, the same per-class
  gate as INT8); the INT8 twin (`<model dir>/int8/<stem>.int8.onnx`), which exists only when its gate passed;
- each candidate is compiled and timed on a blank input of the model's size, interleaved, and the fastest wins;
- the decision is cached in a JSON file keyed by CPU model, oneDNN's instruction-set cap (`ONEDNN_MAX_CPU_ISA`),
  OpenVINO version, thread count and the files' sha256, so a restart (or a second replica on the same kind of
  machine) does not measure again.

`f32`, `bf16` or `int8` pin the precision and skip the measurement. Only serving and `detector predict` choose;
evaluation and the quality report compute what they are given (`BackendOptions.pinned`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from detector.errors import DetectorError, ModelLoadError
from detector.files import write_atomic
from detector.runtime.backends.base import BackendOptions
from detector.runtime.metadata import read_onnx_metadata, sha256_file

log = logging.getLogger(__name__)

GATES_FILE = "gates.json"
ORDER = ("f32", "bf16", "int8")  # on a tie, the earlier (more exact) precision wins


@dataclass(frozen=True)
class PrecisionChoice:
    """What the served model computes in, which file that is, and why."""

    precision: str  # f32 | bf16 | int8
    model_path: Path
    reason: str
    measured_ms: dict[str, float] = field(default_factory=dict)
    cpu: str = ""

    def options(self, options: BackendOptions) -> BackendOptions:
        """`options` with the compute precision OpenVINO gets for this choice (INT8 models compute as stored)."""
        compute = "bf16" if self.precision == "bf16" else "f32"
        return replace(options, openvino=options.openvino.model_copy(update={"precision": compute}))

    def info(self) -> dict[str, Any]:
        return {**asdict(self), "model_path": str(self.model_path)}


def int8_twin(model_path: Path) -> Path:
    """Where `detector export int8` puts the INT8 twin of `model_path` (export.int8.out_path's default layout)."""
    return model_path.parent / "int8" / f"{model_path.stem}.int8.onnx"


def read_gates(model_path: Path) -> dict[str, Any]:
    """The export's accuracy gates beside `model_path` ({} when there are none or the file is unreadable)."""
    path = model_path.parent / "int8" / GATES_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def cpu_name() -> str:
    """The CPU model as the OS names it (the cache key: one decision per kind of CPU)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def isa_cap() -> str:
    """oneDNN's instruction-set cap (`ONEDNN_MAX_CPU_ISA`, upper-case), or "" where none is set."""
    return os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()


def native_bf16() -> bool:
    """Whether OpenVINO computes bf16 natively on this CPU (AVX512_BF16 or AMX); elsewhere bf16 is emulated.
    A oneDNN capped below bf16 (`ONEDNN_MAX_CPU_ISA=AVX2`, as this project's tests run) has none, whatever the CPU
    reports: OpenVINO then cannot even compile some layers in bf16."""
    import openvino as ov

    cap = isa_cap()
    if cap and cap != "ALL" and "BF16" not in cap and "AMX" not in cap:
        return False
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def candidates(model_path: Path) -> tuple[dict[str, Path], list[str]]:
    """The precisions this model may run in here (name -> file), and why the others may not."""
    found = {"f32": model_path}
    skipped = []
    bf16_gate = read_gates(model_path).get("bf16") or {}
    if not native_bf16():
        skipped.append("bf16: this CPU has no native bf16")
    elif not bf16_gate.get("passed"):
        skipped.append(f"bf16: {bf16_gate.get('reason') or 'no passed bf16 gate (detector export int8 runs it)'}")
    else:
        found["bf16"] = model_path
    twin = int8_twin(model_path)
    if twin.is_file():
        found["int8"] = twin
    else:
        skipped.append(f"int8: no {twin} (detector export int8; it exists only when its gate passed)")
    return found, skipped


def default_cache() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "yolo-detector" / "precision.json"


Measure = Callable[[dict[str, Path], BackendOptions], dict[str, float]]


def measure(found: dict[str, Path], options: BackendOptions, rounds: int = 15) -> dict[str, float]:
    """Median ms of one inference per candidate on a blank input of the model's size, interleaved round by round
    so that a noisy neighbour slows every candidate alike. A candidate OpenVINO cannot compile here is left out
    (logged); f32, the model as exported, must compile."""
    from detector.runtime.backends.openvino_backend import OpenVinoBackend

    h, w = read_onnx_metadata(found["f32"]).imgsz
    loaded = {}
    blanks: dict[str, npt.NDArray[Any]] = {}
    try:
        for name, path in found.items():
            choice = PrecisionChoice(name, path, "")
            latency = choice.options(options)
            latency = replace(latency, openvino=latency.openvino.model_copy(update={"hint": "latency"}))
            try:
                backend = OpenVinoBackend(path, latency)
                blank = np.zeros((1, 3, h, w), backend.input_spec.dtype)  # the type it takes: uint8 pixels
                backend.run(blank)  # compiles the shape: where a precision fails here, it fails
            except ModelLoadError as exc:
                if name == "f32":
                    raise
                log.warning("precision %s left out: %s", name, exc)
                continue
            loaded[name], blanks[name] = backend, blank
        times: dict[str, list[float]] = {name: [] for name in loaded}
        for name, backend in loaded.items():  # warm up
            backend.run(blanks[name])
        for _ in range(rounds):
            for name, backend in loaded.items():
                t0 = time.perf_counter()
                backend.run(blanks[name])
                times[name].append((time.perf_counter() - t0) * 1e3)
    finally:
        for backend in loaded.values():
            backend.close()
    return {name: round(statistics.median(ms), 2) for name, ms in times.items()}


def choose(model_path: Path, options: BackendOptions, timer: Measure = measure) -> PrecisionChoice:
    """The precision `model_path` runs in on this CPU under `options.openvino.precision` (see the module doc)."""
    wanted = options.openvino.precision
    cpu = cpu_name()
    if wanted in ("f32", "bf16"):
        return PrecisionChoice(wanted, model_path, "pinned by inference.openvino.precision", cpu=cpu)
    if wanted == "int8":
        twin = int8_twin(model_path)
        if not twin.is_file():
            raise ModelLoadError(
                f"inference.openvino.precision is int8 but {twin} does not exist: run `detector export int8` "
                "(it writes the twin only when its accuracy gate passes), or set the precision to auto or f32"
            )
        return PrecisionChoice("int8", twin, "pinned by inference.openvino.precision", cpu=cpu)
    if _stored_precision(model_path) == "int8":  # served as it is: a Q/DQ model has no other precision to pick
        return PrecisionChoice("int8", model_path, "the model file itself is INT8", cpu=cpu)
    found, skipped = candidates(model_path)
    if len(found) == 1:
        return PrecisionChoice("f32", model_path, "the only candidate (" + "; ".join(skipped) + ")", cpu=cpu)
    key = _cache_key(cpu, found, options)
    path = Path(options.openvino.choice_cache) if options.openvino.choice_cache else default_cache()
    record = _read_cache(path).get(key)
    if record and record.get("precision") in found:
        name = record["precision"]
        ms = record.get("measured_ms", {})
        return PrecisionChoice(name, found[name], f"cached measurement on this CPU ({_times(ms)})", ms, cpu)
    ms = timer(found, options)
    name = min(ms, key=lambda n: (ms[n], ORDER.index(n)))
    files = {n: str(p) for n, p in found.items()}
    _write_cache(path, key, {"precision": name, "measured_ms": ms, "cpu": cpu, "files": files})
    return PrecisionChoice(name, found[name], f"fastest measured on this CPU ({_times(ms)})", ms, cpu)


def _stored_precision(model_path: Path) -> str:
    try:
        return read_onnx_metadata(model_path).precision
    except DetectorError:  # unreadable: loading it says why, with the backend's own message
        return ""


def _times(ms: dict[str, float]) -> str:
    return ", ".join(f"{n} {v:g} ms" for n, v in sorted(ms.items(), key=lambda kv: kv[1]))


def _cache_key(cpu: str, found: dict[str, Path], options: BackendOptions) -> str:
    import openvino as ov

    # The cap is part of the CPU as OpenVINO computes on it: on the Intel AMX VM, capped at AVX512_CORE_BF16 (an AMD
    # EPYC's set), bf16 at 256 px took 7.9 ms against 3.3 uncapped while INT8 took 3.7 against 3.2, so a decision
    # measured without the cap (bf16) is the wrong one under it.
    files = (f"{n}={sha256_file(p)}" for n, p in sorted(found.items()))
    parts = [cpu, isa_cap(), ov.__version__, str(options.threads), *files]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, key: str, record: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps({**_read_cache(path), key: record}, indent=2, sort_keys=True) + "\n")
    except OSError as exc:  # a read-only home (a locked-down container): measure again next start, say why once
        log.warning("precision choice not cached (%s): %s", path, exc)
