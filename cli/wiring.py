"""What the composition root injects into the layers below it."""

from __future__ import annotations

import logging

from detector.config import Config
from detector.runtime.engines import EngineBuilder
from detector.runtime.model_source import ModelResolver

log = logging.getLogger(__name__)


def engine_builder() -> EngineBuilder | None:
    """`export.tensorrt.build_engine` where the build code is installed, so the TensorRT backend can build a missing
    engine; None in an image that ships only the runtime (it then loads cached engines and says how to build)."""
    try:
        from export.tensorrt import build_engine
    except ImportError as exc:
        log.debug("no TensorRT engine builder here (%s): cached engines only", exc)
        return None
    return build_engine


def model_resolver(config: Config) -> ModelResolver:
    """`models:/name@alias` -> a local ONNX, through the registry at `train.mlflow.tracking_uri`, cached in
    `inference.registry_cache_dir` (mlflow is imported only when a registry URI is actually served)."""
    from detector.registry import registry_resolver

    return registry_resolver(config.train.mlflow.tracking_uri, config.inference.registry_cache_dir)
