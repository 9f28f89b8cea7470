"""`Detections.to_supervision`: the one conversion to `supervision.Detections`, used by drawing and by tracking."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import supervision as sv

from detector.runtime.detections import Detections
from detector.runtime.draw import draw_detections


def _dets() -> Detections:
    return Detections(
        np.array([[1, 2, 30, 40], [5.5, 6, 7, 80]], np.float32),
        np.array([0.9, 0.25], np.float32),
        np.array([2, 0], np.int64),
        {0: "circle", 2: "triangle"},
    )


def test_to_supervision_keeps_every_box_score_class_and_position() -> None:
    converted = _dets().to_supervision()
    assert isinstance(converted, sv.Detections) and len(converted) == 2
    assert converted.xyxy.dtype == np.float32 and converted.xyxy.tolist() == [[1, 2, 30, 40], [5.5, 6, 7, 80]]
    assert converted.confidence is not None and converted.confidence.tolist() == pytest.approx([0.9, 0.25])
    assert converted.class_id is not None and converted.class_id.tolist() == [2, 0]
    assert converted.data["index"].tolist() == [0, 1]  # a tracker's reordered result maps back through it
    empty = Detections.empty().to_supervision()
    assert len(empty) == 0 and empty.xyxy.shape == (0, 4)


def test_drawing_converts_through_it(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    convert = Detections.to_supervision

    def counted(self: Detections) -> Any:
        calls.append(len(self))
        return convert(self)

    monkeypatch.setattr(Detections, "to_supervision", counted)
    draw_detections(np.zeros((100, 100, 3), np.uint8), _dets())
    assert calls == [2]
