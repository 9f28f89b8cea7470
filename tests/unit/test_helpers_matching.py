"""tests/matching.py, the comparison every parity test relies on: extra boxes count, empty sides compare nothing.

A test of the test suite's own helper, not of a package, so it sits at the top of tests/unit/ instead of in a
package's folder."""

from __future__ import annotations

import numpy as np
import pytest

from tests.matching import Match, match, match_all

A = ([[0, 0, 10, 10]], [0.9], [0])
B = ([[20, 20, 30, 30]], [0.8], [1])
NONE = (np.zeros((0, 4)), [], [])


def boxes(*parts: tuple[list[list[int]], list[float], list[int]]) -> tuple[list[list[int]], list[float], list[int]]:
    return ([b for p in parts for b in p[0]], [c for p in parts for c in p[1]], [k for p in parts for k in p[2]])


def test_identical_sets_agree_fully() -> None:
    assert match(boxes(A, B), boxes(A, B), 0.99, 0.01) == Match(2, 0, 0)
    assert match(boxes(A, B), boxes(A, B), 0.99, 0.01).agreement == 1.0


def test_extra_boxes_on_our_side_lower_the_agreement() -> None:
    """The GPU test's old match rate counted only reference boxes, so extra boxes scored 100 %."""
    result = match(boxes(A, B), boxes(A), 0.99, 0.01)
    assert result == Match(1, 0, 1) and result.agreement == 0.5


def test_missed_boxes_lower_it_too_and_one_box_matches_once() -> None:
    assert match(boxes(A), boxes(A, B), 0.99, 0.01) == Match(1, 1, 0)
    assert match(boxes(A), boxes(A, A), 0.99, 0.01) == Match(1, 1, 0)  # two reference copies, one box of ours


def test_class_confidence_and_iou_must_all_agree() -> None:
    assert match(([[0, 0, 10, 10]], [0.9], [1]), A, 0.99, 0.01).matched == 0
    assert match(([[0, 0, 10, 10]], [0.7], [0]), A, 0.99, 0.01).matched == 0
    assert match(([[1, 0, 11, 10]], [0.9], [0]), A, 0.99, 0.01).matched == 0
    assert match(([[1, 0, 11, 10]], [0.9], [0]), A, 0.8, 0.01).matched == 1


def test_nothing_on_either_side_compares_nothing() -> None:
    total = match_all([NONE, NONE], [NONE, NONE], 0.99, 0.01)
    with pytest.raises(ValueError, match="nothing was compared"):
        _ = total.agreement
