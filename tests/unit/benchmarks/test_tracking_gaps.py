"""`benchmarks.tracking_gaps` on synthetic detections (no model, no clip): with no gap both ways agree with the
reference; with gaps, telling the tracker the frame numbers keeps most of the fast objects' ids that one step a call
loses, and the counts are of the boxes the reference tracked."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.tracking_gaps import kept_frames, measure, to_markdown
from detector.runtime.detections import Detections


def _objects(frames: int = 120) -> list[Detections]:
    """Three 30 px objects moving 6-10 px a frame, apart from each other."""
    out = []
    for f in range(frames):
        rows = [
            (20.0 + speed * f, 40.0 + 100 * k, 50.0 + speed * f, 70.0 + 100 * k) for k, speed in enumerate((6, 8, 10))
        ]
        boxes = np.array(rows, np.float32)
        out.append(Detections(boxes, np.full(3, 0.9, np.float32), np.zeros(3, np.int64), {0: "thing"}))
    return out


def test_kept_frames_start_at_zero_with_gaps_in_range() -> None:
    frames = kept_frames(200, 4, seed=1)
    gaps = np.diff(frames)
    assert frames[0] == 0 and frames[-1] < 200 and gaps.min() >= 1 and gaps.max() <= 4 and len(set(gaps)) == 4
    assert kept_frames(10, 1, seed=0) == list(range(10))


def test_frame_numbers_keep_the_ids_one_step_a_call_loses() -> None:
    detections = _objects()
    no_gap, gaps = measure(detections, 30.0, [1, 4], seeds=3)
    for way in ("numbered", "one_a_call"):
        assert no_gap[way] == {"boxes": 3 * 120 * 3, "tracks": 3 * 3, "extra_ids": 0, "untracked": 0}  # 3 draws summed
    numbered, one_a_call = gaps["numbered"], gaps["one_a_call"]
    assert numbered["boxes"] == one_a_call["boxes"] < 3 * 120 * 3
    # Deterministic (seeded draws, exact boxes). Numbered still loses a few: a track's speed is learned from its
    # first frames, and a gap of 4 before it is learned outruns a 30 px box.
    assert 2 * numbered["extra_ids"] <= one_a_call["extra_ids"] and 2 * numbered["untracked"] <= one_a_call["untracked"]
    assert "| 4 |" in to_markdown([no_gap, gaps])


def test_ultralytics_bytetracker_counts_as_one_step_a_call() -> None:
    """The third way is Ultralytics' own tracker, which steps one frame a call as ours did: on the same gapped frames
    it loses the same ids (ours follows it box for box, tests/unit/detector/runtime/test_tracker.py)."""
    pytest.importorskip("ultralytics")
    (row,) = measure(_objects(), 30.0, [4], seeds=2, ultralytics=True)
    assert row["ultralytics"] == row["one_a_call"] and row["numbered"]["extra_ids"] < row["ultralytics"]["extra_ids"]
    assert "frame numbers / one a call / Ultralytics" in to_markdown([row])
