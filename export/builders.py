"""The engine builder the composition roots inject into the runtime: `cli.wiring` for `detector serve` and
`detector predict`, and each Ray replica (`serve_ray.deployment`), which is its own composition root."""

from __future__ import annotations

import logging

from detector.runtime.engines import EngineBuilder

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
