"""Choosing per-class confidence thresholds from matched predictions (synthetic, where the best cut is known)."""

from __future__ import annotations

import numpy as np
import pytest

from detector.config import ThresholdsConfig
from detector.evaluation.metrics import ClassMatches, DetectionMetrics
from detector.evaluation.thresholds import best_threshold, choose_thresholds
from detector.runtime.detections import Detections

F1 = ThresholdsConfig(rule="f1", min=0.0, max=1.0)


def matches(conf: list[float], tp: list[bool], n_gt: int) -> ClassMatches:
    return ClassMatches(np.asarray(conf, np.float64), np.asarray(tp, bool), n_gt)


@pytest.mark.parametrize(
    ("conf", "tp", "n_gt", "expected"),
    [
        # 3 TPs then 2 FPs, 3 objects: F1 peaks (1.0) keeping the first three -> midway between 0.7 and 0.4.
        ([0.9, 0.8, 0.7, 0.4, 0.3], [1, 1, 1, 0, 0], 3, 0.55),
        # An FP on top, then 2 TPs: keeping all three (F1 0.8) beats keeping none of the TPs.
        ([0.95, 0.6, 0.5], [0, 1, 1], 2, (0.5 + 0.001) / 2),
        # TP, FP, TP, 3 objects: keeping 1 -> F1 0.5, keeping 3 -> 0.667: the lower cut wins.
        ([0.9, 0.8, 0.2], [1, 0, 1], 3, (0.2 + 0.001) / 2),
        # Equal F1 at two cuts: the higher threshold (fewer boxes) is chosen.
        ([0.9, 0.5, 0.4], [1, 0, 1], 1, 0.7),
        # Ties in confidence: the cut never falls between two equal scores.
        ([0.9, 0.6, 0.6, 0.2], [1, 1, 0, 0], 2, 0.4),
    ],
)
def test_f1_best_threshold(conf: list[float], tp: list[int], n_gt: int, expected: float) -> None:
    assert best_threshold(matches(conf, [bool(t) for t in tp], n_gt), F1) == pytest.approx(expected, abs=1e-4)


def test_precision_rule_takes_the_lowest_confidence_reaching_the_target() -> None:
    m = matches([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [True, True, True, False, True, False], 5)
    # Precision by cut: 1, 1, 1, 0.75, 0.8, 0.67: >= 0.8 last holds keeping five (down to 0.5).
    assert best_threshold(m, ThresholdsConfig(rule="precision", precision_target=0.8, min=0, max=1)) == 0.45
    assert best_threshold(m, ThresholdsConfig(rule="precision", precision_target=1.0, min=0, max=1)) == 0.65
    # Unreachable target: the strictest allowed threshold.
    unreachable = matches([0.9, 0.8], [False, True], 1)
    assert best_threshold(unreachable, ThresholdsConfig(rule="precision", precision_target=0.9, max=0.8)) == 0.8


def test_clipped_to_bounds_and_undecidable_classes_left_out() -> None:
    clip = ThresholdsConfig(rule="f1", min=0.1, max=0.5)
    assert best_threshold(matches([0.9, 0.8, 0.3], [1, 1, 0], 2), clip) == 0.5  # 0.55 clipped down
    assert best_threshold(matches([0.9, 0.05], [1, 1], 2), clip) == 0.1  # 0.0255 clipped up
    assert best_threshold(matches([0.9], [False], 0), F1) is None  # no objects of the class on the split
    assert best_threshold(matches([0.9, 0.8], [False, False], 3), F1) is None  # never right: nothing to learn
    assert best_threshold(matches([], [], 3), F1) is None  # objects, but never predicted


def test_thresholds_from_detection_metrics_differ_per_class() -> None:
    # Class 0 is always right at 0.9 and wrong at 0.5: threshold 0.7. Class 1 is right at 0.3: threshold 0.1505.
    # Class 2 has predictions but no objects: no threshold.
    names = {0: "a", 1: "b", 2: "c"}
    metrics = DetectionMetrics(names)
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    for _ in range(3):
        pred = Detections(
            np.array([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30], [70, 70, 80, 80]], np.float32),
            np.array([0.9, 0.5, 0.3, 0.2], np.float32),
            np.array([0, 0, 1, 2], np.int64),
            names,
        )
        metrics.update(pred, gt, np.array([0, 1]))
    chosen = choose_thresholds(metrics, F1)
    assert chosen == pytest.approx({0: 0.7, 1: (0.3 + 0.001) / 2}, abs=1e-4)
    assert {c: m.n_gt for c, m in metrics.class_matches().items()} == {0: 3, 1: 3, 2: 0}
