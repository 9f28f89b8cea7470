"""The drift reference profile (`detector.evaluation.profile`) written into a candidate ONNX file's metadata.

Measured after the per-class thresholds are in the file, through the runtime with them applied: the profile must
describe what the service will return, box confidences included. No split to measure on, profiling disabled, or a
dataset whose classes are not the model's: no profile, and the service exports no drift metrics for the model.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from detector.config import ProfileConfig
from detector.data import load_names
from detector.errors import DatasetError
from detector.evaluation.golden import choose_golden
from detector.evaluation.profile import reference_profile
from detector.runtime import Detector
from detector.runtime.metadata import ModelMetadata, read_onnx_metadata
from export.model_metadata import rewrite_metadata

log = logging.getLogger(__name__)


def add_reference_profile(model_path: Path, dataset_dir: Path | None, settings: ProfileConfig) -> ModelMetadata:
    """Profile the ONNX file `model_path` on `settings.split`, choose its golden images there
    (`export.profile.golden_images`), and rewrite its metadata in place; an inherited profile or golden set (an INT8
    model copies the FP32 metadata) is replaced or cleared. Returns the metadata written."""
    metadata = read_onnx_metadata(model_path)
    profile: dict[str, Any] = {}
    golden: list[dict[str, Any]] = []
    split_dir = Path(dataset_dir or "") / "images" / settings.split
    if not settings.enabled:
        log.info("export.profile.enabled is false: no drift reference profile in %s", model_path.name)
    elif dataset_dir is None or not split_dir.is_dir():
        log.info("no %s split at %s: no drift reference profile in the model", settings.split, split_dir)
    else:
        try:
            same_classes = load_names(Path(dataset_dir)) == metadata.names
        except DatasetError as exc:
            log.info("no drift reference profile: %s", exc)
            same_classes = False
        if same_classes:
            with Detector.load(model_path, backend="onnxruntime") as detector:
                profile = reference_profile(detector, Path(dataset_dir), settings.split)
                golden = choose_golden(detector, Path(dataset_dir), settings.split, settings.golden_images)
    updated = dataclasses.replace(metadata, reference_profile=profile, golden=golden)
    if updated != metadata:
        rewrite_metadata(model_path, updated)
    return updated
