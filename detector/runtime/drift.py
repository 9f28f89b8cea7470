"""Drift statistics: what a model sees and finds, as fixed-bin histograms, and the population-stability index (PSI)
between a reference (the validation split, profiled at export) and live traffic.

Fixed bin edges (not quantiles of the reference) so that a reference and any window are comparable bin for bin and
the histograms can be exported as they are. Statistics, per image: brightness and contrast (mean and standard
deviation of luma on a strided sample of about 64x64 pixels: no extra pass over the image), its size, its number of
boxes; per box: confidence, area as a share of the image, aspect ratio, and class (a categorical histogram over the
model's class names). PSI = sum((live - ref) * ln(live / ref)) over bins of shares; a common reading: < 0.1 stable,
0.1-0.25 moving, > 0.25 shifted.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from detector.runtime.detections import Detections

_INF = float("inf")
EDGES: dict[str, npt.NDArray[np.float64]] = {
    "brightness": np.linspace(0.0, 256.0, 9),  # mean luma, 0-255
    "contrast": np.linspace(0.0, 128.0, 9),  # luma standard deviation (128 = the most two levels can give)
    "image_pixels": np.geomspace(1e4, 4e7, 13),
    "boxes_per_image": np.array([0, 1, 2, 3, 5, 8, 13, 21, 34, _INF]),
    "confidence": np.linspace(0.0, 1.0, 11),
    "box_area": np.geomspace(1e-4, 1.0, 13),  # box area / image area
    "box_aspect": np.geomspace(1 / 8, 8, 13),  # width / height
}
IMAGE_STATS = ("brightness", "contrast", "image_pixels", "boxes_per_image")
BOX_STATS = ("confidence", "box_area", "box_aspect")
CLASS_STAT = "class"
STATISTICS = (*IMAGE_STATS, *BOX_STATS, CLASS_STAT)
_SAMPLE_SIDE = 32  # strided sample of the image for brightness/contrast: about 32x32 pixels
# Additive smoothing, in counts per bin, of both histograms before PSI: a reference of a few hundred images leaves
# bins empty that live traffic of the same distribution fills now and then, and with the textbook 1e-4 share per
# empty bin that alone read as PSI > 2 (measured: val vs test split of the quick dataset, 40 vs 20 images).
_SMOOTHING = 0.5


def bins(stat: str, values: npt.NDArray[Any]) -> list[int]:
    """Bin index of each value; values outside the edges go to the first or last bin."""
    edges = EDGES[stat]
    idx = np.searchsorted(edges, np.asarray(values, np.float64), side="right") - 1
    return np.clip(idx, 0, len(edges) - 2).tolist()  # type: ignore[no-any-return]


def bin_of(stat: str, value: float) -> int:
    """`bins` for one value, without numpy's per-call overhead (about 20 us a call: most of an observation)."""
    edges = _EDGE_LISTS[stat]
    return min(max(bisect.bisect_right(edges, value) - 1, 0), len(edges) - 2)


_EDGE_LISTS = {stat: edges.tolist() for stat, edges in EDGES.items()}


def luma_stats(pixels: npt.NDArray[np.uint8]) -> tuple[float, float]:
    """(mean, std) of luma (BT.601) over a strided sample of an RGB (or grey) image: about 1k pixels whatever its
    size, gathered into a small contiguous array first, so it costs tens of microseconds, not a pass over a 1080p
    frame (a float matmul over the strided view of a 1080p image took 350 us)."""
    h, w = pixels.shape[:2]
    sample = np.ascontiguousarray(pixels[:: max(1, h // _SAMPLE_SIDE), :: max(1, w // _SAMPLE_SIDE)])
    grey = cv2.cvtColor(sample[..., :3], cv2.COLOR_RGB2GRAY) if sample.ndim == 3 else sample
    mean, std = cv2.meanStdDev(grey)
    return float(mean[0, 0]), float(std[0, 0])


@dataclass(frozen=True)
class Observation:
    """One image's contribution: bin indices per statistic (box statistics: one per box; class: names)."""

    bins: dict[str, list[int]]
    classes: tuple[str, ...]


def observe(pixels: npt.NDArray[np.uint8], size: tuple[int, int], detections: Detections) -> Observation:
    """`pixels`: the decoded image (possibly reduced); `size`: (height, width) of the image as sent, the space of the
    boxes."""
    brightness, contrast = luma_stats(pixels)
    height, width = size
    xyxy = detections.xyxy.astype(np.float64)
    w = np.clip(xyxy[:, 2] - xyxy[:, 0], 1e-6, None)
    h = np.clip(xyxy[:, 3] - xyxy[:, 1], 1e-6, None)
    per_image = {
        "brightness": [bin_of("brightness", brightness)],
        "contrast": [bin_of("contrast", contrast)],
        "image_pixels": [bin_of("image_pixels", float(height * width))],
        "boxes_per_image": [bin_of("boxes_per_image", len(detections))],
    }
    if not len(detections):
        return Observation(per_image | {stat: [] for stat in BOX_STATS}, ())
    per_box = {
        "confidence": bins("confidence", detections.confidence),
        "box_area": bins("box_area", w * h / max(1.0, float(height * width))),
        "box_aspect": bins("box_aspect", w / h),
    }
    return Observation(per_image | per_box, tuple(detections.class_names()))


@dataclass
class Histograms:
    """Counts per bin for every statistic, over some images; `add`/`remove` keep a rolling window exact."""

    class_names: tuple[str, ...]
    images: int = 0
    counts: dict[str, npt.NDArray[np.int64]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for stat in (*IMAGE_STATS, *BOX_STATS):
            self.counts.setdefault(stat, np.zeros(len(EDGES[stat]) - 1, np.int64))
        self.counts.setdefault(CLASS_STAT, np.zeros(len(self.class_names) + 1, np.int64))  # + "other"
        self._class_index = {name: i for i, name in enumerate(self.class_names)}

    def _apply(self, obs: Observation, sign: int) -> None:
        # Plain loops over a handful of indices: np.add.at costs ~7 us a call, most of an update.
        self.images += sign
        for stat, idx in obs.bins.items():
            counts = self.counts[stat]
            for i in idx:
                counts[i] += sign
        other = len(self.class_names)
        counts = self.counts[CLASS_STAT]
        for name in obs.classes:
            counts[self._class_index.get(name, other)] += sign

    def add(self, obs: Observation) -> None:
        self._apply(obs, 1)

    def remove(self, obs: Observation) -> None:
        self._apply(obs, -1)

    def shares(self, stat: str) -> npt.NDArray[np.float64]:
        counts = self.counts[stat].astype(np.float64)
        total = counts.sum()
        return counts / total if total else np.zeros_like(counts)

    def psi(self, reference: Histograms, stat: str) -> float:
        """PSI of this histogram (live) against `reference` for `stat`."""
        return psi(reference.counts[stat], self.counts[stat])

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "class_names": list(self.class_names),
            "counts": {stat: self.counts[stat].tolist() for stat in STATISTICS},
            "edges": {stat: [e if np.isfinite(e) else "inf" for e in EDGES[stat].tolist()] for stat in EDGES},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Histograms:
        """A profile written by `to_dict`; ValueError when its bins are not this version's (then it cannot be
        compared bin for bin)."""
        names = tuple(str(n) for n in data["class_names"])
        counts = {stat: np.asarray(data["counts"][stat], np.int64) for stat in STATISTICS}
        expected = {stat: len(EDGES[stat]) - 1 for stat in EDGES} | {CLASS_STAT: len(names) + 1}
        wrong = [stat for stat, n in expected.items() if counts[stat].shape != (n,)]
        if wrong:
            raise ValueError(f"reference profile bins differ from this version's for {', '.join(wrong)}")
        return cls(names, int(data["images"]), counts)


def psi(reference: npt.NDArray[Any], live: npt.NDArray[Any]) -> float:
    """Population-stability index of two count vectors over the same bins, each smoothed by `_SMOOTHING`."""
    ref = np.asarray(reference, np.float64) + _SMOOTHING
    cur = np.asarray(live, np.float64) + _SMOOTHING
    ref, cur = ref / ref.sum(), cur / cur.sum()
    return float(np.sum((cur - ref) * np.log(cur / ref)))
