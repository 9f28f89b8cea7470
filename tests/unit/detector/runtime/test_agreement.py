from __future__ import annotations

import numpy as np
import pytest

from detector.runtime.agreement import Agreement, match_boxes
from detector.runtime.detections import Detections

NAMES = {0: "cat", 1: "dog"}


def dets(rows: list[tuple[float, float, float, float, float, int]]) -> Detections:
    if not rows:
        return Detections.empty(NAMES)
    a = np.array(rows, dtype=np.float64)
    return Detections(a[:, :4].astype(np.float32), a[:, 4].astype(np.float32), a[:, 5].astype(np.int64), NAMES)


def test_match_is_one_to_one_same_class_and_best_iou_first() -> None:
    ref = dets([(0, 0, 10, 10, 0.9, 0), (20, 20, 30, 30, 0.8, 1)])
    cand = dets([(1, 0, 11, 10, 0.7, 0), (0, 0, 10, 10, 0.6, 0), (20, 20, 30, 30, 0.5, 0)])
    r, c = match_boxes(ref, cand, iou=0.5)
    assert r.tolist() == [0] and c.tolist() == [1]  # exact twin wins; the dog box has only a cat twin


def test_agreement_counts_per_class_and_confidence_shift() -> None:
    agreement = Agreement(iou=0.5)
    agreement.update(dets([(0, 0, 10, 10, 0.9, 0), (20, 20, 30, 30, 0.8, 1)]), dets([(0, 0, 10, 10, 0.7, 0)]))
    agreement.update(dets([]), dets([(0, 0, 5, 5, 0.4, 1)]))
    out = agreement.as_dict()
    assert out["images"] == 2 and out["matched"] == 1
    assert out["reference_boxes"] == 2 and out["candidate_boxes"] == 2
    assert out["match_rate"] == pytest.approx(0.5)
    assert out["confidence_shift"] == pytest.approx(-0.2, abs=1e-6)
    assert out["per_class"]["cat"] == {"reference": 1, "candidate": 1, "matched": 1, "recall": 1.0, "count_delta": 0}
    assert out["per_class"]["dog"]["recall"] == 0.0 and out["per_class"]["dog"]["count_delta"] == 0


def test_identical_and_empty_agree_fully() -> None:
    agreement = Agreement(iou=0.9)
    same = dets([(0, 0, 10, 10, 0.9, 0)])
    agreement.update(same, same)
    agreement.update(dets([]), dets([]))
    assert agreement.match_rate == 1.0 and agreement.confidence_shift == 0.0
