"""`python -m benchmarks.video`'s parts on the quick model: its three clips (the third H.264 with B-frames), and each
runner (our CLI loop, our `POST /predict/video`, Ultralytics' `track`) goes through every frame of a clip, tracking
on, and through every third with `--vid-stride 3`. Speed is not asserted: that is the benchmark's to measure, not a
test's."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from tests.clips import b_frames

pytest.importorskip("ultralytics")
pytest.importorskip("lap")  # Ultralytics' ByteTrack


def _frames(clip: Path) -> tuple[int, int, int]:
    cap = cv2.VideoCapture(str(clip))
    try:
        return (
            int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
            int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
    finally:
        cap.release()


def test_every_runner_goes_through_every_frame(
    model_path: Path, dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks.service import local_service
    from benchmarks.video import generated_clip, h264_clip, ours_cli, ours_http, real_clip, ultralytics_track

    clips = [generated_clip(tmp_path / "g.mp4", dataset_dir, seconds=1), real_clip(tmp_path / "r.mp4", seconds=1)]
    clips.append(h264_clip(tmp_path / "h.mp4", clips[1]))
    assert [_frames(c) for c in clips] == [(30, 1280, 720)] * 3
    assert b_frames(clips[2]) >= 5  # x264 chose them (the mp4v source has none)
    cli, strided = ours_cli(model_path, threads=2), ours_cli(model_path, threads=2, stride=3)
    try:
        assert [cli(c) for c in clips] == [30, 30, 30]
        assert strided(clips[2]) == 10
    finally:
        cli.close()
        strided.close()
    monkeypatch.setenv("DETECTOR_INFERENCE__SERVER__MAX_UPLOAD_MB", "50")
    with local_service(model_path, "openvino", 2) as url:
        assert [ours_http(url)(c) for c in clips] == [30, 30, 30]
        assert ours_http(url, stride=3)(clips[2]) == 10
    # Ultralytics tracks the same ONNX here (the benchmark gives it its own OpenVINO INT8 export of the weights).
    assert [ultralytics_track(model_path, 128)(c) for c in clips] == [30, 30, 30]
    assert ultralytics_track(model_path, 128, stride=3)(clips[2]) == 10
