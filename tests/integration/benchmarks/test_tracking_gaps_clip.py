"""`benchmarks.tracking_gaps` on a real clip and the quick model: every frame detected once (read as the CLI reads a
clip), then the three ways tracked on the same detections. Counts, not quality: those are the benchmark's."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.tracking_gaps import detect_clip, measure


def test_every_frame_of_the_clip_is_detected_once_and_tracked(
    model_path: Path, dataset_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("lap")  # Ultralytics' ByteTrack
    from benchmarks.video import generated_clip

    clip = generated_clip(tmp_path / "g.mp4", dataset_dir, seconds=1)
    detections, fps = detect_clip(model_path, clip, backend="onnxruntime", batch=8)
    assert len(detections) == 30 and fps == 30.0
    assert sum(len(d) for d in detections) > 0  # the generated clip's objects are the model's classes
    no_gap, gaps = measure(detections, fps, [1, 3], seeds=1, ultralytics=True)
    boxes = no_gap["numbered"]["boxes"]
    assert boxes > 0 and no_gap["numbered"]["extra_ids"] == 0 == no_gap["numbered"]["untracked"]
    assert no_gap["ultralytics"]["extra_ids"] == 0  # their tracker on every frame: the reference's ids
    # The same frames kept, fewer of them, for each way.
    assert gaps["numbered"]["boxes"] == gaps["one_a_call"]["boxes"] == gaps["ultralytics"]["boxes"] < boxes


def test_a_damaged_frame_keeps_its_place_with_nothing_seen(model_path: Path, dataset_dir: Path, tmp_path: Path) -> None:
    # As the CLI reads a clip: a packet that cannot be decoded is a frame where nothing was seen, the frames after it
    # keep their numbers (the tracker steps over it).
    from tests.clips import confident_scene, write_mjpeg_of_sizes

    scene, _ = confident_scene(model_path, dataset_dir)
    sizes = [(320, 240)] * 6
    clean = write_mjpeg_of_sizes(tmp_path / "clean.avi", sizes, scene=scene)
    damaged = write_mjpeg_of_sizes(tmp_path / "damaged.avi", sizes, scene=scene, damaged=frozenset({2}))
    whole, _ = detect_clip(model_path, clean, backend="onnxruntime")
    got, _ = detect_clip(model_path, damaged, backend="onnxruntime")
    assert len(got) == len(whole) == 6 and len(whole[2]) > 0 and len(got[2]) == 0
    assert [d.xyxy.tolist() for n, d in enumerate(got) if n != 2] == [
        d.xyxy.tolist() for n, d in enumerate(whole) if n != 2
    ]
