"""Per-class confidence thresholds in post-processing: raw heads (single- and multi-label) and end-to-end heads."""

from __future__ import annotations

import numpy as np
import pytest

from detector.errors import InvalidInputError
from detector.runtime.classes import parse_class_conf, resolve_class_conf
from detector.runtime.postprocess import postprocess
from detector.runtime.preprocess import LetterboxInfo

IDENTITY = LetterboxInfo(orig_shape=(1000, 1000), gain=(1.0, 1.0), pad=(0, 0))
NAMES3 = {0: "circle", 1: "square", 2: "triangle"}


def _raw_head(rows: list[tuple[float, float, float, float, list[float]]], n_anchors: int = 50) -> np.ndarray:
    out = np.zeros((1, 4 + len(rows[0][4]), n_anchors), np.float32)
    for i, (cx, cy, w, h, scores) in enumerate(rows):
        out[0, :4, i] = (cx, cy, w, h)
        out[0, 4:, i] = scores
    return out


# Three disjoint boxes, one per class, scored 0.3 (circle), 0.5 (square), 0.7 (triangle).
RAW = _raw_head([(50, 50, 20, 20, [0.3, 0, 0]), (150, 50, 20, 20, [0, 0.5, 0]), (250, 50, 20, 20, [0, 0, 0.7])])
E2E = np.zeros((1, 300, 6), np.float32)
E2E[0, :3] = [(40, 40, 60, 60, 0.7, 2), (140, 40, 160, 60, 0.5, 1), (240, 40, 260, 60, 0.3, 0)]


@pytest.mark.parametrize(
    ("conf", "class_conf", "kept"),
    [
        (0.25, None, [0, 1, 2]),
        (0.25, {2: 0.8}, [0, 1]),  # triangle's own threshold is above its 0.7
        (0.6, {0: 0.2}, [0, 2]),  # a class threshold below conf lets circle's 0.3 through
        (0.25, {1: 0.5}, [0, 2]),  # strict, as for conf: a score equal to the threshold is dropped
        (0.9, {0: 0.1, 1: 0.1, 2: 0.1}, [0, 1, 2]),  # every class named: conf no longer matters
        (0.25, {7: 0.99}, [0, 1, 2]),  # a class the head does not have changes nothing
    ],
)
@pytest.mark.parametrize("head", ["raw", "raw-multi", "end2end"])
def test_each_class_is_held_to_its_own_threshold(
    head: str, conf: float, class_conf: dict[int, float] | None, kept: list[int]
) -> None:
    if head == "end2end":
        (det,) = postprocess(E2E, [IDENTITY], NAMES3, "end2end", conf=conf, class_conf=class_conf)
    else:
        multi = head == "raw-multi"
        (det,) = postprocess(
            RAW, [IDENTITY], NAMES3, "raw", conf=conf, iou=0.5, multi_label=multi, class_conf=class_conf
        )
    assert sorted(det.class_id.tolist()) == kept


def test_a_box_below_its_class_threshold_does_not_suppress_another() -> None:
    # Agnostic NMS: a square (0.6) over a circle (0.4). The square wins at a plain conf; held to square's 0.65 it is
    # dropped before NMS, so it cannot suppress the circle.
    head = _raw_head([(50, 50, 20, 20, [0, 0.6, 0]), (51, 51, 20, 20, [0.4, 0, 0])])
    (plain,) = postprocess(head, [IDENTITY], NAMES3, "raw", conf=0.25, iou=0.5, agnostic=True)
    (det,) = postprocess(head, [IDENTITY], NAMES3, "raw", conf=0.25, iou=0.5, agnostic=True, class_conf={1: 0.65})
    assert plain.class_id.tolist() == [1]
    assert det.class_id.tolist() == [0]


def test_single_label_keeps_the_argmax_class_only() -> None:
    # A box scored circle 0.5 / square 0.45: its class is circle, held to circle's 0.6, so it is dropped rather than
    # reported as a square that passes square's lower threshold (what serving without thresholds would never say).
    head = _raw_head([(50, 50, 20, 20, [0.5, 0.45, 0])])
    (det,) = postprocess(head, [IDENTITY], NAMES3, "raw", conf=0.25, iou=0.5, class_conf={0: 0.6, 1: 0.1})
    assert len(det) == 0


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("circle:0.4", {0: 0.4}), (" Square : 0.6 , 2:0.1", {1: 0.6, 2: 0.1}), ("0:0,1:1", {0: 0.0, 1: 1.0})],
)
def test_parse_class_conf(spec: str, expected: dict[int, float]) -> None:
    assert parse_class_conf(spec, NAMES3) == expected


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("dog:0.4", "unknown class 'dog'"),
        ("circle", "not CLASS:CONF"),
        ("circle:high", "not CLASS:CONF"),
        ("circle:1.5", r"in \[0, 1\]"),
        (",", "empty"),
        (",".join(f"c{i}:0.1" for i in range(2000)), "at most 1000"),
    ],
)
def test_parse_class_conf_rejects_bad_entries_briefly(spec: str, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match) as err:
        parse_class_conf(spec, NAMES3)
    assert len(str(err.value)) < 300


def test_resolve_class_conf_rejects_non_numbers() -> None:
    with pytest.raises(InvalidInputError, match="must be a number"):
        resolve_class_conf({"circle": "0.4"}, NAMES3)  # type: ignore[dict-item]
