"""Models named by a registry URI (`models:/name@alias`): the service's loader, made registry-aware.

The resolver (MLflow) is injected by the CLI; this module only wraps the detector factory so that a registry URI
is resolved (alias -> version -> cached local ONNX) on every load, the initial one and each `/admin/reload`, and
the loaded model's `describe()` carries `registry: {name, version, alias, ...}` for `/model`.
"""

from __future__ import annotations

from typing import Any

from api.model.slot import DetectorLike
from api.service import DetectorFactory
from detector.errors import ModelLoadError
from detector.runtime.model_source import ModelResolver, ResolvedModel, is_registry_uri


class RegistryModel:
    """A loaded detector whose `describe()` also says where in the registry it came from. Everything else is the
    detector's own, looked up on it (`__getattr__`), so this wrapper cannot drift from `DetectorLike`."""

    def __init__(self, detector: DetectorLike, resolved: ResolvedModel) -> None:
        self._detector = detector
        self.resolved = resolved

    def __getattr__(self, name: str) -> Any:  # only names the wrapper itself lacks
        return getattr(object.__getattribute__(self, "_detector"), name)

    def describe(self) -> dict[str, Any]:
        return {**self._detector.describe(), "registry": self.resolved.describe()}


def registry_aware(factory: DetectorFactory, resolver: ModelResolver | None) -> DetectorFactory:
    """`factory` for file paths; for `models:/...` resolve first (a ModelLoadError when no resolver was injected
    or the registry cannot answer: a clear start-up failure, or a 422 on reload while the old model serves)."""

    def load(model_path: str, backend: str) -> DetectorLike:
        if not is_registry_uri(model_path):
            return factory(model_path, backend)
        if resolver is None:
            raise ModelLoadError(
                f"{model_path} is an MLflow registry URI, but this app has no registry resolver: start it with "
                "`detector serve`, which resolves models:/ URIs through train.mlflow.tracking_uri"
            )
        resolved = resolver(model_path)
        return RegistryModel(factory(str(resolved.path), backend), resolved)

    return load
