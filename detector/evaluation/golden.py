"""Choosing a model's golden images at export (`detector.runtime.golden` checks them in the service).

From the split, the images on which the model finds the most boxes, taken greedily so that every class the model
finds there appears in at least one of them when `count` allows; each with the boxes the model gives it at fixed,
explicit thresholds (recorded with it, so the check does not depend on the service's threshold settings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from detector.evaluation.evaluate import list_images
from detector.runtime import Detector
from detector.runtime.golden import GoldenImage
from detector.runtime.images import decode_image

THRESHOLDS: dict[str, Any] = {"conf": 0.25, "iou": 0.7, "max_det": 300}


def choose_golden(detector: Detector, dataset_dir: Path, split: str, count: int) -> list[dict[str, Any]]:
    """Up to `count` golden images of `split` as metadata entries (GoldenImage.to_dict); [] for count 0."""
    if count <= 0:
        return []
    answered = []
    for path in list_images(Path(dataset_dir), split):
        data = path.read_bytes()
        found = detector.predict_batch([decode_image(data)], **THRESHOLDS)[0]
        if len(found):
            answered.append((data, found))
    answered.sort(key=lambda item: -len(item[1]))  # stable: the split's order breaks ties
    chosen: list[int] = []
    covered: set[int] = set()
    for i, (_, found) in enumerate(answered):  # first pass: an image for each class not yet covered
        if len(chosen) < count and set(found.class_id.tolist()) - covered:
            chosen.append(i)
            covered |= set(found.class_id.tolist())
    chosen += [i for i in range(len(answered)) if i not in chosen][: count - len(chosen)]
    return [
        GoldenImage(data, found.xyxy, found.class_id.astype(np.int64), found.confidence, dict(THRESHOLDS)).to_dict()
        for data, found in (answered[i] for i in sorted(chosen))
    ]
