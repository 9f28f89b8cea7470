"""`python -m benchmarks.live`'s parts on the quick model: the frame number stamped into each JPEG reads back, the
camera sends every frame at its pace, and both runners answer it, over HTTP MJPEG, RTSP and RTMP (ours through a runner
process, as the benchmark runs it). Speed is not asserted: that is the benchmark's to measure, not a test's."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("ultralytics")


def test_stamps_survive_jpeg() -> None:
    from benchmarks.live import read_stamp, stamp

    rng = np.random.default_rng(0)
    for number in (0, 1, 1234, 4095):
        noisy = rng.integers(0, 255, (720, 1280, 3), np.uint8)
        jpeg = cv2.imencode(".jpg", stamp(noisy, number), [cv2.IMWRITE_JPEG_QUALITY, 85])[1]
        assert read_stamp(cv2.imdecode(jpeg, cv2.IMREAD_COLOR)) == number
    assert read_stamp(np.zeros((720, 1280, 3), np.uint8)) is None  # a blank frame has no number


def test_both_runners_answer_the_camera(model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The service built by earlier tests in this process limits OpenCV's FFmpeg to local files (restrict_ffmpeg);
    # the benchmark's runners are processes of their own, without it.
    monkeypatch.delenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", raising=False)
    from benchmarks.cameras import MjpegCamera
    from benchmarks.live import camera_frames, load_ultralytics, one_round, read_stamp
    from benchmarks.video import real_clip

    jpegs = camera_frames(real_clip(tmp_path / "r.mp4", seconds=1), 30)
    assert [read_stamp(cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR)) for j in jpegs] == list(range(30))
    ours = one_round("ours", model_path, 128, 2, jpegs)  # a runner process, as the benchmark starts it
    assert 0 < ours["answered_share"] <= 1 and 0 < ours["latency_p50_ms"] <= ours["latency_p95_ms"] < 5000
    unsized = one_round("ours", model_path, 128, 2, jpegs, camera_kind="mjpeg-unsized")  # no Content-Length
    assert 0 < unsized["answered_share"] <= 1 and 0 < unsized["latency_p50_ms"] <= unsized["latency_p95_ms"] < 5000
    camera = MjpegCamera(jpegs, 30, once=True)
    try:
        answers = load_ultralytics([camera.url], model_path, 128, tmp_path)()  # Ultralytics runs the same ONNX here
    finally:
        camera.close()
    numbers = [n for _, n, _ in answers]
    assert numbers and numbers == sorted(set(numbers)) and numbers[-1] <= 29
    assert len(camera.sent) == 30 and camera.sent == sorted(camera.sent)


def test_the_h264_camera_sends_every_stamped_frame_and_ours_answers_it(model_path: Path, tmp_path: Path) -> None:
    import io

    import av

    from benchmarks.live import h264_chunks, one_round, read_stamp
    from benchmarks.video import real_clip

    chunks = h264_chunks(real_clip(tmp_path / "r.mp4", seconds=1), 30, 30)
    with av.open(io.BytesIO(b"".join(chunks)), format="mpegts") as container:
        stamps = [read_stamp(f.to_ndarray(format="bgr24")) for f in container.decode(video=0)]
    assert len(chunks) == 30 and stamps == list(range(30))
    ours = one_round("ours", model_path, 128, 2, chunks, 30, camera_kind="h264")
    assert 0 < ours["answered_share"] <= 1 and 0 < ours["latency_p50_ms"] <= ours["latency_p95_ms"] < 5000


@pytest.mark.parametrize("kind", ["rtsp", "rtsp-h265", "rtmp"])
def test_the_rtsp_and_rtmp_cameras_are_answered_by_both_runners(
    kind: str, model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    import av

    monkeypatch.delenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", raising=False)  # as above
    from benchmarks.live import CAMERAS, camera_for, load_ultralytics, one_round, read_stamp
    from benchmarks.video import real_clip
    from tests.cameras import annex_b

    frames = CAMERAS[kind](real_clip(tmp_path / "r.mp4", seconds=2), 60, 30)
    with av.open(io.BytesIO(annex_b(frames)), format="hevc" if kind == "rtsp-h265" else "h264") as container:
        stamps = [read_stamp(f.to_ndarray(format="bgr24")) for f in container.decode(video=0)]
    assert stamps == list(range(60))
    ours = one_round("ours", model_path, 128, 2, frames, 30, camera_kind=kind)
    assert 0 < ours["answered_share"] <= 1 and 0 < ours["latency_p50_ms"] <= ours["latency_p95_ms"] < 5000
    camera = camera_for(kind, frames, 30)  # OpenCV's FFmpeg reader (Ultralytics') reads it too
    try:
        answers = load_ultralytics([camera.url], model_path, 128, tmp_path)()
    finally:
        camera.close()
    numbers = [n for _, n, _ in answers]
    assert numbers and numbers == sorted(set(numbers)) and numbers[-1] <= 59
    assert len(camera.sent) == 60


def test_two_cameras_at_once_are_answered_by_both_runners(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", raising=False)  # as above
    from benchmarks.cameras import MjpegCamera
    from benchmarks.live import camera_frames, load_ultralytics, one_round
    from benchmarks.video import real_clip

    jpegs = camera_frames(real_clip(tmp_path / "r.mp4", seconds=1), 30)
    ours = one_round("ours", model_path, 128, 2, jpegs, cameras=2)  # one runner process for both
    assert 0 < ours["answered_share"] <= 1 and 0 < ours["latency_p50_ms"] <= ours["latency_p95_ms"] < 5000
    cameras = [MjpegCamera(jpegs, 30, once=True) for _ in range(2)]
    try:
        answers = load_ultralytics([c.url for c in cameras], model_path, 128, tmp_path)()  # its .streams loader
    finally:
        for camera in cameras:
            camera.close()
    for which in (0, 1):  # each camera's frames, told apart
        numbers = [n for c, n, _ in answers if c == which]
        assert numbers and numbers == sorted(set(numbers)) and numbers[-1] <= 29
