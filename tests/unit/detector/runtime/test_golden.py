"""detector.runtime.golden: which differences fail a golden image (clear boxes lost or invented) and which do not
(a box near the threshold coming or going, as between backends)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from detector.runtime import Detections
from detector.runtime.golden import GoldenImage, golden_problem

NAMES = {0: "circle", 1: "square"}
THRESHOLDS = {"conf": 0.25, "iou": 0.7, "max_det": 300}


def dets(*rows: tuple[float, float, float, float, float, int]) -> Detections:
    a = np.array(rows, np.float64).reshape(-1, 6)
    return Detections(a[:, :4].astype(np.float32), a[:, 4].astype(np.float32), a[:, 5].astype(np.int64), NAMES)


def golden(*rows: tuple[float, float, float, float, float, int]) -> GoldenImage:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 90, 90)).save(buf, "PNG")
    d = dets(*rows)
    return GoldenImage(buf.getvalue(), d.xyxy, d.class_id, d.confidence, THRESHOLDS)


RECORDED = ((0, 0, 20, 20, 0.9, 0), (30, 10, 50, 30, 0.8, 1), (5, 30, 15, 40, 0.28, 1))


def test_round_trip_through_metadata() -> None:
    g = golden(*RECORDED)
    back = GoldenImage.from_dict(g.to_dict())
    assert back.data == g.data and back.thresholds == THRESHOLDS
    assert np.allclose(back.boxes, g.boxes) and back.class_id.tolist() == [0, 1, 1]
    assert back.pixels().shape == (48, 64, 3)


def test_boxes_near_the_threshold_may_come_and_go() -> None:
    g = [golden(*RECORDED)]
    assert golden_problem(g, [dets(*RECORDED)], NAMES) is None
    assert golden_problem(g, [dets(*RECORDED[:2])], NAMES) is None  # the 0.28 box is gone
    slightly_moved = ((1, 0, 21, 20, 0.85, 0), (30, 11, 50, 31, 0.83, 1), (40, 35, 50, 45, 0.3, 0))
    assert golden_problem(g, [dets(*slightly_moved)], NAMES) is None  # a new weak box, small shifts


def test_a_lost_clear_box_an_invented_one_or_a_wrong_class_fails() -> None:
    g = [golden(*RECORDED)]
    lost = golden_problem(g, [dets(RECORDED[0], RECORDED[2])], NAMES)
    assert lost is not None and "golden image 1 of 1: 1 of 2 clear boxes found again" in lost
    invented = golden_problem(g, [dets(*RECORDED, (40, 35, 60, 45, 0.7, 0))], NAMES)
    assert invented is not None and "1 clear boxes not seen at export" in invented
    swapped = golden_problem(g, [dets((0, 0, 20, 20, 0.9, 1), RECORDED[1])], NAMES)
    assert swapped is not None
    assert golden_problem(g, [Detections.empty(NAMES)], NAMES) is not None
