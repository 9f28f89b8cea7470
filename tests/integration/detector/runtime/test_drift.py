"""Drift statistics with the real trained model on real images: traffic like the reference stays under the alert
threshold, and each synthetic shift (darker images, smaller objects, a class that stops appearing) moves its own
statistic past it. The reference is the train split (200 images): PSI of two samples of one distribution is about
(bins - 1) * (1/n_ref + 1/n_live), so with the 40-image val split alone the noise would be near the threshold."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from detector.evaluation.evaluate import list_images, read_rgb
from detector.evaluation.profile import reference_profile
from detector.runtime import Detector
from detector.runtime.drift import STATISTICS, Histograms, observe

ALERT = 0.25  # deploy/monitoring/alerts.yml: DetectorDrift
Image = npt.NDArray[np.uint8]


@pytest.fixture(scope="module")
def detector(model_path: Path) -> Detector:
    return Detector.load(model_path, backend="onnxruntime")


@pytest.fixture(scope="module")
def reference(detector: Detector, dataset_dir: Path) -> Histograms:
    profile = reference_profile(detector, dataset_dir, "train")
    assert profile["images"] == 200 and profile["split"] == "train"
    return Histograms.from_dict(profile)


def held_out(dataset_dir: Path, keep: Callable[[str], bool] = lambda labels: True) -> list[Image]:
    """val + test images (not in the reference) whose label file text passes `keep`."""
    out = []
    for split in ("val", "test"):
        for path in list_images(dataset_dir, split):
            label = dataset_dir / "labels" / split / f"{path.stem}.txt"
            if keep(label.read_text() if label.exists() else ""):
                out.append(read_rgb(path))
    return out


def drift(detector: Detector, reference: Histograms, images: list[Image]) -> dict[str, float]:
    live = Histograms(reference.class_names)
    for image in images:
        live.add(observe(image, image.shape[:2], detector.predict(image)))
    return {stat: live.psi(reference, stat) for stat in STATISTICS}


def shrink(image: Image) -> Image:
    """The same scene at half size in one corner of a flat canvas: every object gets 4x smaller."""
    h, w = image.shape[:2]
    canvas = np.full_like(image, int(np.median(image)))
    canvas[: h // 2, : w // 2] = cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    return canvas


def test_unchanged_traffic_stays_under_the_alert_threshold(
    detector: Detector, reference: Histograms, dataset_dir: Path
) -> None:
    psi = drift(detector, reference, held_out(dataset_dir))
    assert max(psi.values()) < ALERT, psi


@pytest.mark.parametrize(
    ("shift", "statistic"),
    [("darker", "brightness"), ("smaller objects", "box_area"), ("no triangles", "class")],
)
def test_each_shift_moves_its_statistic_past_the_threshold(
    detector: Detector, reference: Histograms, dataset_dir: Path, shift: str, statistic: str
) -> None:
    if shift == "darker":
        images = [(image * 0.35).astype(np.uint8) for image in held_out(dataset_dir)]
    elif shift == "smaller objects":
        images = [shrink(image) for image in held_out(dataset_dir)]
    else:
        triangle = str(reference.class_names.index("triangle"))
        images = held_out(
            dataset_dir, lambda labels: not any(line.split()[:1] == [triangle] for line in labels.splitlines())
        )
    psi = drift(detector, reference, images)
    assert psi[statistic] > 2 * ALERT, (shift, psi)
