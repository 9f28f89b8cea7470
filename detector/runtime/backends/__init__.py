"""Backend registry: name -> lazily imported class, so heavy libraries load only when chosen."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from detector.config import BACKEND_NAMES
from detector.errors import BackendUnavailableError, InvalidInputError, MissingDependencyError, ModelLoadError
from detector.runtime.backends import vendor_telemetry
from detector.runtime.backends.base import Backend, BackendOptions, TensorSpec

__all__ = [
    "AUTO_ORDER",
    "REGISTRY",
    "Backend",
    "BackendOptions",
    "TensorSpec",
    "available",
    "create",
    "first_available",
    "get",
]

log = logging.getLogger(__name__)

vendor_telemetry.turn_off()  # before any backend loads OpenVINO's converter (backends/vendor_telemetry.py says why)

# name -> "module:Class". Adding a backend is one file plus one line here.
REGISTRY: dict[str, str] = {
    "onnxruntime": "detector.runtime.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "openvino": "detector.runtime.backends.openvino_backend:OpenVinoBackend",
    "tensorrt": "detector.runtime.backends.tensorrt_backend:TensorRTBackend",
}
# `auto` tries these in order: fastest first where it can run.
AUTO_ORDER: tuple[str, ...] = BACKEND_NAMES
if set(REGISTRY) != set(BACKEND_NAMES):  # pragma: no cover - a programming error, caught at import by every test
    raise RuntimeError(f"backend registry {sorted(REGISTRY)} and config BACKEND_NAMES {BACKEND_NAMES} disagree")


def get(name: str) -> type[Backend]:
    """The backend class for `name`; MissingDependencyError if its library is not installed."""
    if name not in REGISTRY:
        raise InvalidInputError(f"unknown backend {name!r}; choose one of: auto, {', '.join(REGISTRY)}")
    module_name, class_name = REGISTRY[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MissingDependencyError(f"backend {name!r} needs a package that is not installed: {exc}") from exc
    cls: type[Backend] = getattr(module, class_name)
    return cls


def available() -> dict[str, str]:
    """Every registered backend -> "" if it can run here, else the reason it cannot."""
    result: dict[str, str] = {}
    for name in REGISTRY:
        try:
            ok, why = get(name).is_available()
        except (MissingDependencyError, BackendUnavailableError) as exc:
            ok, why = False, str(exc)
        result[name] = "" if ok else (why or "unavailable")
    return result


def first_available() -> str | None:
    """The backend `auto` tries first here (None: none can run)."""
    status = available()
    return next((name for name in AUTO_ORDER if status.get(name) == ""), None)


def create(name: str, model_path: Path, options: BackendOptions | None = None) -> Backend:
    """Load `model_path` on backend `name`, or with `auto` on the first backend in AUTO_ORDER that loads.

    `auto` logs each backend it skips and why, so a fallback is never silent.
    """
    options = options or BackendOptions()
    if name != "auto":
        cls = get(name)
        ok, why = cls.is_available()
        if not ok:
            raise BackendUnavailableError(f"backend {name!r} cannot run here: {why}")
        return cls(model_path, options)
    reasons: list[str] = []
    for candidate in AUTO_ORDER:
        try:
            cls = get(candidate)
            ok, why = cls.is_available()
            if not ok:
                raise BackendUnavailableError(why)
            backend = cls(model_path, options)
        except (MissingDependencyError, BackendUnavailableError) as exc:
            reasons.append(f"{candidate}: {exc}")
            log.info("backend auto: skipping %s (%s)", candidate, exc)
            continue
        except ModelLoadError as exc:
            # A broken model file fails the same way on every backend: say so instead of trying the rest.
            if candidate == AUTO_ORDER[-1]:
                raise
            reasons.append(f"{candidate}: {exc}")
            log.warning("backend auto: %s could not load %s (%s); trying the next", candidate, model_path, exc)
            continue
        log.info("backend auto: picked %s", candidate)
        return backend
    raise BackendUnavailableError("no backend can run here: " + "; ".join(reasons))
