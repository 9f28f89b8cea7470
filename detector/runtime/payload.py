"""The JSON shape of one prediction, shared by `detector predict` and `POST /predict`."""

from __future__ import annotations

from typing import Any

from detector.runtime.detections import Detections


def prediction_payload(
    detections: Detections, image_shape: tuple[int, ...], model: dict[str, Any], timings_ms: dict[str, float]
) -> dict[str, Any]:
    """`{"detections": [...], "image": {"width", "height"}, "model": {...}, "timings_ms": {...}}`."""
    return {
        "detections": detections.to_list(),
        "image": {"width": int(image_shape[1]), "height": int(image_shape[0])},
        "model": {"name": model["name"], "version": model["version"], "backend": model["backend"]},
        "timings_ms": timings_ms,
    }
