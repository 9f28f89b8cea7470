"""The quality report: every model (FP32 ONNX, INT8) on every backend, per class, with box parity against the `.pt`.

A row per model x backend: overall and per-class AP50-95, precision and recall (Ultralytics-exact, `metrics.py`,
at validation thresholds), and parity: at a serving threshold, the share of the `.pt`'s boxes this model finds
too (`detector.runtime.agreement`, same class, IoU >= `parity_iou`), overall and per class. The `.pt`'s own boxes
come from Ultralytics (`detector.evaluation.reference`), passed in, so this module needs no torch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detector.config import QualityConfig
from detector.errors import BackendUnavailableError, DetectorError, MissingDependencyError
from detector.evaluation.evaluate import evaluate_split, list_images, read_rgb
from detector.runtime.agreement import Agreement
from detector.runtime.backends.base import BackendOptions
from detector.runtime.detections import Detections
from detector.runtime.detector import Detector

log = logging.getLogger(__name__)


def row_key(precision: str, backend: str) -> str:
    return f"{precision}_{backend}"


def score_model(
    path: Path,
    variant: str,
    backend: str,
    dataset_dir: Path,
    rules: QualityConfig,
    reference: Sequence[Detections] | None,
    options: BackendOptions | None = None,
) -> dict[str, Any]:
    """One row of the report (see the module docstring); BackendUnavailableError when `backend` cannot run here."""
    with Detector.load(path, backend=backend, options=options) as detector:
        result = evaluate_split(detector, dataset_dir, rules.split)
        row: dict[str, Any] = {
            "model": str(path),
            "backend": backend,
            "variant": variant,
            **result.as_dict(),
            "per_class": result.per_class(),
        }
        if reference is not None:
            agreement = Agreement(iou=rules.parity_iou)
            images = list_images(dataset_dir, rules.split)
            if len(images) != len(reference):
                raise ValueError(f"{len(reference)} reference results for {len(images)} images")
            for start in range(0, len(images), 8):
                arrays = [read_rgb(p) for p in images[start : start + 8]]
                preds = detector.predict_batch(arrays, conf=rules.parity_conf)
                for ref, pred in zip(reference[start : start + 8], preds, strict=True):
                    agreement.update(ref, pred)
            row["parity"] = agreement.match_rate
            row["parity_per_class"] = {name: c.recall for name, c in sorted(agreement.per_class.items())}
    return row


def quality_report(
    models: dict[str, Path],
    dataset_dir: Path,
    rules: QualityConfig,
    reference: Sequence[Detections] | None,
    options: BackendOptions | None = None,
) -> dict[str, Any]:
    """Rows for every `{precision: model file}` on every configured backend.

    A backend that cannot run on this machine (no GPU for TensorRT, OpenVINO not installed) is listed under
    `skipped` with the reason; one that is available but fails on the model gets a row with `error`, which the
    gate counts against an FP32 model."""
    rows: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for backend in rules.backends:
        for precision, path in models.items():
            try:
                rows[row_key(precision, backend)] = score_model(
                    path, precision, backend, dataset_dir, rules, reference, options
                )
            except (BackendUnavailableError, MissingDependencyError) as exc:
                skipped[backend] = str(exc)
                log.info("quality report: %s skipped (%s)", backend, exc)
                break  # the backend is not here: no other model will run on it either
            except DetectorError as exc:
                log.warning("quality report: %s could not score %s: %s", backend, path, exc)
                rows[row_key(precision, backend)] = {
                    "model": str(path),
                    "backend": backend,
                    "variant": precision,
                    "error": str(exc),
                }
    return {
        "split": rules.split,
        "parity_iou": rules.parity_iou,
        "parity_conf": rules.parity_conf,
        "models": rows,
        "skipped": skipped,
    }
