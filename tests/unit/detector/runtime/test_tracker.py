"""`detector.runtime.video.Tracker` (ByteTrack) on synthetic detections: no model, no video.

The reference ByteTrack (ifzhang/ByteTrack, `STrack.activate`: `if frame_id == 1: self.is_activated = True`)
confirms the tracks of a stream's first frame at once; a track born on a later frame is confirmed by its second
detection."""

from __future__ import annotations

import numpy as np

from detector.runtime.detections import Detections
from detector.runtime.video import Tracker


def _dets(*boxes: tuple[float, float, float, float, float]) -> Detections:
    """Detections of class 0 from `(x1, y1, x2, y2, confidence)` rows."""
    rows = np.array(boxes, dtype=np.float32).reshape(-1, 5)
    return Detections(rows[:, :4], rows[:, 4], np.zeros(len(rows), np.int64), {0: "thing"})


def _moving(frame: int, x0: float = 100.0, speed: float = 2.0) -> tuple[float, float, float, float, float]:
    x = x0 - speed * frame  # an object panning left, as in the test clips
    return (x, 40.0, x + 30.0, 70.0, 0.8)


def test_tracks_start_on_the_first_frame() -> None:
    tracker = Tracker(frame_rate=15.0)
    ids = [tracker.update(_dets(_moving(i))) for i in range(10)]
    assert ids[0] == [ids[0][0]] and ids[0][0] is not None, f"no track id on the first frame: {ids}"
    assert {i[0] for i in ids} == {ids[0][0]}, f"one object, one id across the clip: {ids}"


def test_two_objects_on_the_first_frame_get_distinct_ids_in_input_order() -> None:
    tracker = Tracker(frame_rate=15.0)
    far = (10.0, 10.0, 30.0, 30.0, 0.9)
    first = tracker.update(_dets(_moving(0), far))
    assert None not in first and len(set(first)) == 2
    assert tracker.update(_dets(far, _moving(1))) == first[::-1]  # ids follow the objects, not the row order


def test_low_confidence_first_frame_detection_starts_no_track() -> None:
    """Under the high-confidence threshold ByteTrack creates no track, on the first frame as on any other."""
    tracker = Tracker(frame_rate=15.0)
    assert tracker.update(_dets((0.0, 0.0, 20.0, 20.0, 0.35))) == [None]


def test_an_object_appearing_later_is_confirmed_by_its_second_detection() -> None:
    tracker = Tracker(frame_rate=15.0)
    assert tracker.update(Detections.empty({0: "thing"})) == []
    second = tracker.update(_dets(_moving(1)))
    third = tracker.update(_dets(_moving(2)))
    assert second == [None] and third[0] is not None  # as the reference: only frame 1 activates at once
