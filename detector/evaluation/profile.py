"""The reference profile of a model: the drift statistics (`detector.runtime.drift`) of what it finds on a dataset
split, with the serving thresholds. Shipped inside the model's metadata; the service compares live traffic with it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from detector.evaluation.evaluate import list_images, read_rgb
from detector.runtime.detector import Detector
from detector.runtime.drift import Histograms, observe

log = logging.getLogger(__name__)


def reference_profile(detector: Detector, dataset_dir: Path, split: str = "val", batch_size: int = 8) -> dict[str, Any]:
    """Histograms of every drift statistic over `split`, predicted with the detector's own (serving) thresholds."""
    images = list_images(Path(dataset_dir), split)
    hist = Histograms(tuple(detector.metadata.names[i] for i in sorted(detector.metadata.names)))
    for start in range(0, len(images), batch_size):
        arrays = [read_rgb(path) for path in images[start : start + batch_size]]
        for image, dets in zip(arrays, detector.predict_batch(arrays), strict=True):
            hist.add(observe(image, (image.shape[0], image.shape[1]), dets))
    log.info("reference profile of %d %s images of %s", hist.images, split, dataset_dir)
    return {"split": split, **hist.to_dict()}
