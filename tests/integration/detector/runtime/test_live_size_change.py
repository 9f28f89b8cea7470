"""A live stream that changes size mid-run (a camera's resolution or profile changed): every answer is in the
stream's size, the one the run's summary gives, its boxes fitted as the frame would be (aspect kept, black bars); and
a track goes on across the change where the camera's view did not change. Before, with a recording (frames decoded
whole) the answers after the change were in the new frame's pixels (boxes up to 320x240 in a run whose summary said
128x96) and the tracks started again; without one they were stretched into the stream's size."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from detector.runtime import Detector
from detector.runtime.boxes import box_iou
from detector.runtime.detections import Detections
from detector.runtime.live_detect import Reading, detect_live
from tests.cameras import mjpeg_camera


@pytest.mark.parametrize("recording", [False, True])
def test_answers_after_a_size_change_are_in_the_streams_size(
    recording: bool, model_path: Path, dataset_dir: Path, tmp_path: Path
) -> None:
    # With a recording every frame is decoded whole (else at the model's size): the same answers either way.
    scene = _scene(dataset_dir)
    twice = cv2.resize(scene, (256, 256), interpolation=cv2.INTER_LINEAR)  # the same view at twice the resolution
    jpegs = _jpegs([scene] * 6 + [twice] * 6)
    answers: list[tuple[int, Detections, list[int | None] | None]] = []
    with mjpeg_camera(jpegs, fps=10, frames=12) as url, Detector.load(model_path, "openvino") as det:
        run = detect_live(
            det,
            url,
            track=True,
            save=tmp_path / "live.mp4" if recording else None,
            reading=Reading(timeout_s=5),
            on_frame=lambda n, _, d, ids: answers.append((n, d, ids)),
        )
    assert (run.info.width, run.info.height) == (128, 128) and run.received == 12
    before = [a for a in answers if a[0] < 6]
    after = [a for a in answers if a[0] >= 6]
    assert before and after and all(len(d) for _, d, _ in answers), [len(d) for _, d, _ in answers]
    for _, dets, _ in answers:
        assert dets.xyxy.min() >= 0 and dets.xyxy[:, 0::2].max() <= 128 and dets.xyxy[:, 1::2].max() <= 128
    (_, last, last_ids), (_, first, first_ids) = before[-1], after[0]
    assert last_ids is not None and first_ids is not None
    iou = box_iou(last.xyxy, first.xyxy)
    matched = [(i, int(iou[i].argmax())) for i in range(len(last)) if iou[i].max() >= 0.7]
    assert len(matched) >= 0.8 * max(len(last), len(first)), iou  # the same boxes, in the same size
    kept = [last_ids[i] for i, j in matched if last_ids[i] is not None and last_ids[i] == first_ids[j]]
    assert len(kept) >= 0.8 * sum(last_ids[i] is not None for i, _ in matched), (last_ids, first_ids, matched)


@pytest.mark.parametrize("recording", [False, True])
def test_a_stream_in_tiles_that_shrinks_below_the_tile_goes_on(
    recording: bool, model_path: Path, dataset_dir: Path, tmp_path: Path
) -> None:
    # Tiles are cut from the stream's size: a frame of another size is fitted into it first. Before, a camera switched
    # to frames smaller than the tile ended the run ("tile: 128x128 is larger than the image (96x96)").
    from detector.runtime.tiling import Tiling

    scene = _scene(dataset_dir)
    big, small = cv2.resize(scene, (256, 256)), cv2.resize(scene, (96, 96), interpolation=cv2.INTER_AREA)
    jpegs = _jpegs([big] * 4 + [small] * 4)
    answers: list[tuple[int, Detections]] = []
    with mjpeg_camera(jpegs, fps=10, frames=8) as url, Detector.load(model_path, "openvino") as det:
        run = detect_live(
            det,
            url,
            tiles=Tiling.parse("128x128", 0.2),
            save=tmp_path / "live.mp4" if recording else None,
            reading=Reading(timeout_s=5),
            on_frame=lambda n, _, d, __: answers.append((n, d)),
        )
    assert (run.info.width, run.info.height) == (256, 256) and run.received == 8 and "tile" not in run.ended
    assert [n for n, _ in answers if n >= 4], answers  # frames of the small size answered
    for _, dets in answers:
        assert len(dets) == 0 or (dets.xyxy.min() >= 0 and dets.xyxy.max() <= 256)


def _scene(dataset_dir: Path) -> np.ndarray:
    """The first test image of the quick pipeline's dataset (128x128, BGR, with objects)."""
    return cv2.imread(str(sorted((dataset_dir / "images" / "test").glob("*.jpg"))[0]))


def _jpegs(frames: list[np.ndarray]) -> list[bytes]:
    return [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 98])[1].tobytes() for f in frames]


def test_a_frame_of_another_aspect_is_answered_as_the_recording_shows_it() -> None:
    # A 160x240 portrait frame in a 160x120 stream: at half scale between black bars 40 px wide, as the recording
    # fits it (tests/unit/detector/runtime/test_live_recording.py), so its boxes land where the recording shows them.
    from detector.runtime.live import LiveFrame
    from detector.runtime.live_detect import in_stream
    from detector.runtime.video import VideoInfo

    box = np.array([[40.0, 60.0, 100.0, 140.0]], np.float32)
    dets = Detections(box, np.array([0.9], np.float32), np.zeros(1, np.int64), {0: "thing"})
    info = VideoInfo(30.0, 0, 160, 120)
    tall = LiveFrame(0, np.zeros((240, 160, 3), np.uint8), 0.0, 160, 240)
    assert np.allclose(in_stream(dets, tall, info).xyxy, [[60.0, 30.0, 90.0, 70.0]])
    same = LiveFrame(1, np.zeros((120, 160, 3), np.uint8), 0.0, 160, 120)
    assert in_stream(dets, same, info) is dets
