"""What the composition root injects into the layers below it."""

from __future__ import annotations

from detector.config import Config
from detector.runtime.model_source import ModelResolver
from export.builders import engine_builder

__all__ = ["engine_builder", "model_resolver"]


def model_resolver(config: Config) -> ModelResolver:
    """`models:/name@alias` -> a local ONNX, through the registry at `train.mlflow.tracking_uri`, cached in
    `inference.registry_cache_dir` (mlflow is imported only when a registry URI is actually served)."""
    from detector.registry import registry_resolver

    return registry_resolver(config.train.mlflow.tracking_uri, config.inference.registry_cache_dir)
