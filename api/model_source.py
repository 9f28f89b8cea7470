"""Models named by a registry URI (`models:/name@alias`): the service's loader, made registry-aware.

The resolver (MLflow) is injected by the CLI; this module only wraps the detector factory so that a registry URI
is resolved (alias -> version -> cached local ONNX) on every load, the initial one and each `/admin/reload`, and
the loaded model's `describe()` carries `registry: {name, version, alias, ...}` for `/model`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from api.model_slot import DetectorLike
from api.service import DetectorFactory
from detector.errors import ModelLoadError
from detector.runtime import Detections, Timings
from detector.runtime.model_source import ModelResolver, ResolvedModel, is_registry_uri


class RegistryModel:
    """A loaded detector plus where in the registry it came from (everything else is passed through)."""

    def __init__(self, detector: DetectorLike, resolved: ResolvedModel) -> None:
        self._detector = detector
        self.resolved = resolved
        self.max_batch = detector.max_batch

    def predict_batch(
        self,
        images: Sequence[npt.NDArray[np.uint8]],
        conf: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
        multi_label: bool = False,
        timings: Timings | None = None,
    ) -> list[Detections]:
        return self._detector.predict_batch(images, conf, iou, max_det, multi_label, timings)

    def warmup(self, runs: int = 2) -> None:
        self._detector.warmup(runs)

    def describe(self) -> dict[str, Any]:
        return {**self._detector.describe(), "registry": self.resolved.describe()}

    def close(self) -> None:
        self._detector.close()


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
