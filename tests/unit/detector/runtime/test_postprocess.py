"""NMS and head decoding: table-driven edge cases, both head formats, equality with Ultralytics' NMS."""

from __future__ import annotations

import numpy as np
import pytest

from detector.errors import InvalidInputError
from detector.runtime.postprocess import nms, postprocess
from detector.runtime.preprocess import LetterboxInfo

IDENTITY = LetterboxInfo(orig_shape=(1000, 1000), gain=(1.0, 1.0), pad=(0, 0))
NAMES3 = {0: "circle", 1: "square", 2: "triangle"}


@pytest.mark.parametrize(
    ("boxes", "scores", "iou", "expected"),
    [
        ([], [], 0.5, []),  # empty
        ([[0, 0, 10, 10]], [0.9], 0.5, [0]),  # single box
        ([[0, 0, 10, 10], [0, 0, 10, 10]], [0.8, 0.9], 0.5, [1]),  # identical: keep the higher score
        ([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.9], 0.5, [0]),  # tie: the first one wins (stable)
        ([[0, 0, 10, 10], [20, 20, 30, 30]], [0.5, 0.9], 0.5, [1, 0]),  # disjoint: both, by score
        ([[0, 0, 10, 10], [0, 0, 10, 5]], [0.9, 0.8], 0.5, [0, 1]),  # IoU exactly 0.5 is kept (drop only >)
        ([[0, 0, 10, 10], [0, 0, 10, 6]], [0.9, 0.8], 0.5, [0]),  # IoU 0.6 > 0.5 dropped
        ([[0, 0, 10, 10], [1, 1, 11, 11], [2, 2, 12, 12]], [0.9, 0.8, 0.7], 0.5, [0, 2]),  # chain
        ([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8], 1.0, [0, 1]),  # iou=1 keeps duplicates
        ([[0, 0, 0, 0], [0, 0, 0, 0]], [0.9, 0.8], 0.5, [0, 1]),  # zero-area boxes never overlap
        # ... nor among others, which still suppress each other; score order kept across both kinds
        ([[0, 0, 10, 10], [5, 5, 5, 5], [0, 0, 10, 10], [5, 5, 5, 9]], [0.9, 0.8, 0.7, 0.6], 0.5, [0, 1, 3]),
        ([[10, 10, 0, 0], [0, 0, 10, 10]], [0.5, 0.9], 0.5, [1, 0]),  # an inverted box has no area either
        ([[0, 0, 10, 10], [0, 0, 10, 10]], [0.0, -1.0], 0.5, [0]),  # any scores: only their order counts
    ],
)
def test_nms_table(boxes, scores, iou, expected) -> None:
    keep = nms(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32), iou)
    assert keep.tolist() == expected


def test_nms_matches_torchvision() -> None:
    torch = pytest.importorskip("torch")
    ops = pytest.importorskip("torchvision.ops")
    rng = np.random.default_rng(1)
    for _ in range(20):
        xy = rng.uniform(0, 200, (300, 2))
        wh = rng.uniform(5, 60, (300, 2))
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        scores = rng.uniform(0, 1, 300).astype(np.float32)
        expected = ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.45).numpy()
        np.testing.assert_array_equal(nms(boxes, scores, 0.45), expected)


def _raw_head(rows: list[tuple[float, float, float, float, list[float]]], n_anchors: int = 50) -> np.ndarray:
    """A `(1, 4+nc, N)` raw head with the given (cx, cy, w, h, class scores) rows, the rest zero."""
    nc = len(rows[0][4])
    out = np.zeros((1, 4 + nc, n_anchors), np.float32)
    for i, (cx, cy, w, h, scores) in enumerate(rows):
        out[0, :4, i] = (cx, cy, w, h)
        out[0, 4:, i] = scores
    return out


def test_raw_head_class_aware_nms() -> None:
    # Two overlapping boxes of different classes both survive; a same-class duplicate does not.
    head = _raw_head(
        [
            (50, 50, 20, 20, [0.9, 0.0, 0.0]),
            (51, 51, 20, 20, [0.0, 0.8, 0.0]),
            (50, 50, 20, 20, [0.7, 0.0, 0.0]),
        ]
    )
    (det,) = postprocess(head, [IDENTITY], NAMES3, "raw", conf=0.25, iou=0.5)
    assert det.class_id.tolist() == [0, 1]
    np.testing.assert_allclose(det.xyxy[0], [40, 40, 60, 60])
    assert det.class_names() == ["circle", "square"]


def test_raw_head_agnostic_merges_classes() -> None:
    head = _raw_head([(50, 50, 20, 20, [0.9, 0.0]), (51, 51, 20, 20, [0.0, 0.8])])
    (det,) = postprocess(head, [IDENTITY], {0: "a", 1: "b"}, "raw", conf=0.25, iou=0.5, agnostic=True)
    assert len(det) == 1


@pytest.mark.parametrize(("conf", "expected"), [(0.0, 3), (0.5, 2), (0.85, 1), (0.95, 0)])
def test_conf_threshold_is_strict(conf: float, expected: int) -> None:
    head = _raw_head(
        [
            (20, 20, 10, 10, [0.9]),
            (60, 60, 10, 10, [0.6]),
            (100, 100, 10, 10, [0.5]),
        ]
    )
    (det,) = postprocess(head, [IDENTITY], {0: "x"}, "raw", conf=conf, iou=0.5)
    # Scores must be strictly above conf (as in Ultralytics); zero-score padding anchors never pass.
    assert len(det) == expected


def test_max_det_keeps_the_best() -> None:
    head = _raw_head([(10 + 30 * i, 10, 10, 10, [0.5 + i * 0.01]) for i in range(10)])
    (det,) = postprocess(head, [IDENTITY], {0: "x"}, "raw", conf=0.1, iou=0.5, max_det=3)
    np.testing.assert_allclose(det.confidence, [0.59, 0.58, 0.57], rtol=1e-6)


def test_multi_label_gives_one_row_per_class() -> None:
    head = _raw_head([(50, 50, 20, 20, [0.6, 0.5, 0.01])])
    (single,) = postprocess(head, [IDENTITY], NAMES3, "raw", conf=0.1, iou=0.7)
    (multi,) = postprocess(head, [IDENTITY], NAMES3, "raw", conf=0.1, iou=0.7, multi_label=True)
    assert single.class_id.tolist() == [0]
    assert sorted(multi.class_id.tolist()) == [0, 1]


def test_end2end_head() -> None:
    out = np.zeros((2, 300, 6), np.float32)
    out[0, 0] = (10, 10, 50, 50, 0.9, 2)
    out[0, 1] = (60, 60, 90, 90, 0.3, 1)
    out[1, 0] = (5, 5, 15, 15, 0.2, 0)
    dets = postprocess(out, [IDENTITY, IDENTITY], NAMES3, "end2end", conf=0.25)
    assert dets[0].class_id.tolist() == [2, 1]
    np.testing.assert_allclose(dets[0].xyxy[0], [10, 10, 50, 50])
    assert len(dets[1]) == 0


def test_boxes_are_mapped_to_original_pixels() -> None:
    info = LetterboxInfo(orig_shape=(480, 640), gain=(0.2, 0.2), pad=(0, 16))  # 640x480 into 128x128
    head = _raw_head([(64, 64, 20, 10, [0.9])])
    (det,) = postprocess(head, [info], {0: "x"}, "raw")
    np.testing.assert_allclose(det.xyxy[0], [270, 215, 370, 265], atol=1e-3)


@pytest.mark.parametrize(
    ("shape", "head", "names", "match"),
    [
        ((1, 7, 10), "raw", {0: "a"}, "raw head has 3 classes"),
        ((2, 7, 10), "raw", {0: "a", 1: "b", 2: "c"}, "does not match a batch"),
        ((1, 300, 5), "end2end", {0: "a"}, r"must be \(B, K, 6\)"),
        ((1, 7), "raw", {0: "a"}, "does not match a batch"),
    ],
)
def test_postprocess_rejects_mismatched_outputs(shape, head, names, match) -> None:
    with pytest.raises(InvalidInputError, match=match):
        postprocess(np.zeros(shape, np.float32), [IDENTITY], names, head)
