"""Per-class confidence thresholds, chosen on a labelled split and shipped in the model's metadata.

One serving `conf` for every class is a compromise: a class the model scores confidently wants a high threshold
(fewer false positives), a hard class a low one (fewer misses). Per class, this module picks the confidence that
maximises F1 at IoU 0.5 (or the lowest one whose precision reaches a target) from the model's own predictions.

The predictions come from `Detector` exactly as served (`multi_label=False`, the serving IoU), at `conf=0.001`.
Greedy NMS keeps a box only if no higher-scoring box suppresses it, so the boxes above any threshold t are the same
as a run at `conf=t`: one low-threshold pass measures every candidate threshold. Matching is `DetectionMetrics`'s,
the one used for mAP.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from detector.config import ThresholdsConfig
from detector.evaluation.evaluate import match_split
from detector.evaluation.metrics import ClassMatches, DetectionMetrics
from detector.runtime.detector import Detector

log = logging.getLogger(__name__)

SCAN_CONF = 0.001  # the confidence of the pass that measures every candidate threshold


@dataclass(frozen=True)
class ClassThresholds:
    """The thresholds chosen (class id -> confidence; classes without one use the serving conf) and how."""

    values: dict[int, float] = field(default_factory=dict)
    rule: str = ""


def best_threshold(matches: ClassMatches, settings: ThresholdsConfig, floor: float = SCAN_CONF) -> float | None:
    """The threshold for one class, or None where the split cannot tell (no objects or no true positive).

    Only cuts between distinct confidences are candidates, and the threshold is set midway between the last
    prediction kept and the next one (`floor` below the last), so a box at exactly a measured confidence is never
    on the edge (post-processing keeps scores strictly above the threshold).
    """
    conf, tp, n_gt = matches.confidence, matches.tp, matches.n_gt
    if n_gt == 0 or not tp.any():
        return None
    kept = np.arange(1, len(conf) + 1)
    tpc = np.cumsum(tp)
    cut = np.r_[conf[:-1] > conf[1:], True]  # the last prediction of each run of equal confidences
    if settings.rule == "f1":
        f1 = np.where(cut, 2 * tpc / (kept + n_gt), -1.0)
        i = int(f1.argmax())  # the first maximum: the highest threshold among equally good ones
    else:
        reaching = np.flatnonzero(cut & (tpc / kept >= settings.precision_target))
        if not len(reaching):
            return settings.max  # no confidence reaches the target: the strictest allowed threshold
        i = int(reaching[-1])  # the lowest confidence that still reaches it
    below = conf[i + 1] if i + 1 < len(conf) else floor
    threshold = (float(conf[i]) + float(below)) / 2
    return round(min(max(threshold, settings.min), settings.max), 4)


def choose_thresholds(
    metrics: DetectionMetrics, settings: ThresholdsConfig, floor: float = SCAN_CONF
) -> dict[int, float]:
    """`best_threshold` for every class the matches cover (class id -> threshold; undecided classes left out)."""
    chosen = {c: best_threshold(m, settings, floor) for c, m in metrics.class_matches().items()}
    return {c: t for c, t in sorted(chosen.items()) if t is not None}


def describe_rule(settings: ThresholdsConfig, split: str, n_images: int) -> str:
    what = "max F1" if settings.rule == "f1" else f"lowest conf with precision >= {settings.precision_target:g}"
    return f"{what} at IoU 0.5 on {split} ({n_images} images), clipped to [{settings.min:g}, {settings.max:g}]"


def compute_class_thresholds(
    detector: Detector, dataset_dir: Path, settings: ThresholdsConfig, iou: float = 0.7, max_det: int = 300
) -> ClassThresholds:
    """Run `detector` over `settings.split` of `dataset_dir` (as served, see the module docstring) and choose the
    thresholds. DatasetError when the split is missing or its labels are invalid."""
    metrics = match_split(
        detector, dataset_dir, settings.split, conf=SCAN_CONF, iou=iou, max_det=max_det, multi_label=False
    )
    values = choose_thresholds(metrics, settings)
    names = detector.metadata.names
    log.info(
        "per-class thresholds on %s/%s: %s",
        dataset_dir,
        settings.split,
        ", ".join(f"{names.get(c, c)}={t:g}" for c, t in values.items()) or "none (no class could be decided)",
    )
    return ClassThresholds(values, describe_rule(settings, settings.split, metrics.n_images))
