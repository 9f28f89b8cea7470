"""Per-class confidence thresholds written into an exported ONNX file's metadata before the file is final.

The FP32 export and the INT8 export each measure their own (INT8 shifts confidences), on a labelled split of the
configured dataset, through the same runtime that serves them (`detector.evaluation.thresholds`). No split to
measure on (a user exporting a bare .pt), thresholds disabled, or a dataset whose classes are not the model's: the
model carries none, and the service applies `inference.conf` to every class.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from detector.config import ThresholdsConfig
from detector.data import load_names
from detector.errors import DatasetError
from detector.evaluation.thresholds import ClassThresholds, compute_class_thresholds
from detector.runtime import Detector
from detector.runtime.metadata import ModelMetadata, read_onnx_metadata
from export.model_metadata import rewrite_metadata

log = logging.getLogger(__name__)

_BACKEND = "onnxruntime"  # what `detector evaluate` and the INT8 gate measure with


def add_class_thresholds(model_path: Path, dataset_dir: Path | None, settings: ThresholdsConfig) -> ModelMetadata:
    """Measure thresholds for the ONNX file `model_path` and rewrite its metadata in place (it is a candidate file,
    not yet at its final path). Thresholds it inherited (an INT8 model copies the FP32 metadata) are replaced or
    cleared, never kept. Returns the metadata written."""
    metadata = read_onnx_metadata(model_path)
    chosen = _measure(model_path, metadata, dataset_dir, settings)
    updated = dataclasses.replace(metadata, class_conf=chosen.values, class_conf_rule=chosen.rule)
    if updated != metadata:
        rewrite_metadata(model_path, updated)
    return updated


def _measure(
    model_path: Path, metadata: ModelMetadata, dataset_dir: Path | None, settings: ThresholdsConfig
) -> ClassThresholds:
    split_dir = Path(dataset_dir or "") / "images" / settings.split
    if not settings.enabled:
        log.info("export.thresholds.enabled is false: no per-class thresholds in %s", model_path.name)
        return ClassThresholds()
    if dataset_dir is None or not split_dir.is_dir():
        log.info(
            "no %s split at %s: no per-class thresholds in the model (inference.conf applies)",
            settings.split,
            split_dir,
        )
        return ClassThresholds()
    try:
        names = load_names(Path(dataset_dir))
    except DatasetError as exc:
        log.info("no per-class thresholds: %s", exc)
        return ClassThresholds()
    if names != metadata.names:
        log.info("no per-class thresholds: the classes of %s are not the model's", dataset_dir)
        return ClassThresholds()
    with Detector.load(model_path, backend=_BACKEND, class_thresholds=False) as detector:
        return compute_class_thresholds(detector, Path(dataset_dir), settings)
