"""`detector.runtime.tracking.Tracker` (ByteTrack) on synthetic detections: no model, no video.

The reference ByteTrack (ifzhang/ByteTrack, `STrack.activate`: `if frame_id == 1: self.is_activated = True`)
confirms the tracks of a stream's first frame at once; a track born on a later frame is confirmed by its second
detection."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.tracking_gaps import ultralytics_ids
from detector.runtime.detections import Detections
from detector.runtime.tracking import Tracker


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
    assert tracker.update(_dets((0.0, 0.0, 20.0, 20.0, 0.2))) == [None]


def test_an_object_appearing_later_is_confirmed_by_its_second_detection() -> None:
    tracker = Tracker(frame_rate=15.0)
    assert tracker.update(Detections.empty({0: "thing"})) == []
    second = tracker.update(_dets(_moving(1)))
    third = tracker.update(_dets(_moving(2)))
    assert second == [None] and third[0] is not None  # as the reference: only frame 1 activates at once


def test_an_occluded_object_keeps_its_id_through_low_confidence_and_missed_frames() -> None:
    tracker = Tracker(frame_rate=30.0)
    first = tracker.update(_dets(_moving(0)))[0]
    faint = [tracker.update(_dets((*_moving(i)[:4], 0.15)))[0] for i in range(1, 4)]  # under the high threshold
    for _ in range(4, 10):
        tracker.update(Detections.empty({0: "thing"}))  # not seen at all: the track is lost, not gone
    assert faint == [first] * 3 and tracker.update(_dets(_moving(10)))[0] == first


def test_a_track_lost_longer_than_its_buffer_is_gone() -> None:
    tracker = Tracker(frame_rate=30.0)
    first = tracker.update(_dets(_moving(0)))[0]
    for _ in range(32):
        tracker.update(Detections.empty({0: "thing"}))
    assert tracker.update(_dets(_moving(0)))[0] is None and tracker.track_count == 1  # a new, unconfirmed track
    assert tracker.update(_dets(_moving(0)))[0] not in (None, first)


def test_frames_not_detected_between_are_predicted_over() -> None:
    """A live stream read newest-first skips the frames that came while the detector was busy: given their numbers,
    the tracks are predicted over the skipped frames too, so a fast object keeps its id across the gap. Told one
    frame a call (as before), the prediction falls 3 frames (36 px) short of a 30 px box and the id is lost."""
    seen = [0, 1, 2, 3, 7, 8, 9, 13, 14]  # frames 4-6 and 10-12 dropped

    def ids(with_numbers: bool) -> list[int | None]:
        tracker = Tracker(frame_rate=30.0)
        got = [tracker.update(_dets(_moving(f, x0=400.0, speed=12.0)), f if with_numbers else None) for f in seen]
        return [g[0] for g in got]

    assert len(set(ids(with_numbers=True))) == 1 and None not in ids(with_numbers=True)
    assert len(set(ids(with_numbers=False)) - {None}) > 1  # the old way: a new object after each gap


def test_frame_numbers_must_go_forward() -> None:
    tracker = Tracker(frame_rate=30.0)
    tracker.update(_dets(_moving(0)), 5)
    with pytest.raises(ValueError, match="not after"):
        tracker.update(_dets(_moving(1)), 5)


def _scene(seed: int, frames: int = 150) -> list[Detections]:
    """Objects that move, cross, fade under the high threshold, vanish for a while and appear midway; boxes jitter
    and come in a shuffled order."""
    rng = np.random.default_rng(seed)
    n = 12
    start = rng.uniform(0, 600, (n, 2))
    speed = rng.uniform(-6, 6, (n, 2))
    size = rng.uniform(20, 80, (n, 2))
    born = rng.integers(0, frames // 2, n)
    born[: n // 2] = 0
    hidden = [set(range(b, b + rng.integers(0, 12))) for b in rng.integers(0, frames, n)]
    out = []
    for f in range(frames):
        rows = []
        for k in range(n):
            if f < born[k] or f in hidden[k]:
                continue
            xy = start[k] + speed[k] * f + rng.normal(0, 1.5, 2)
            conf = rng.choice([rng.uniform(0.12, 0.25), rng.uniform(0.3, 0.95)], p=[0.15, 0.85])
            rows.append((*xy, *(xy + size[k]), conf))
        rng.shuffle(rows)
        out.append(_dets(*rows) if rows else Detections.empty({0: "thing"}))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ids_follow_the_objects_as_ultralytics_bytetracker_does(seed: int) -> None:
    """The same boxes get ids, and the same boxes share one: ids themselves differ (Ultralytics numbers a track
    when it is born, this one when it is confirmed), so one id must map to exactly one of the other's."""
    frames = _scene(seed)
    pytest.importorskip("ultralytics")
    theirs = ultralytics_ids(frames)  # Ultralytics' BYTETracker with its defaults
    tracker = Tracker(frame_rate=30.0)
    ours = [tracker.update(d) for d in frames]
    pairs = [(a, b) for o, t in zip(ours, theirs, strict=True) for a, b in zip(o, t, strict=True)]
    assert [a is None for a, _ in pairs] == [b is None for _, b in pairs], "different boxes got ids"
    mapping = {(a, b) for a, b in pairs if a is not None}
    assert len({a for a, _ in mapping}) == len({b for _, b in mapping}) == len(mapping), "ids split or merged"
    assert len(mapping) >= 12  # every object was tracked at some point (objects hidden long enough come back new)
