"""`detector predict clip --track`: consecutive frames batched per backend call (on a GPU), or several calls in
flight (OpenVINO's throughput streams on a CPU), give the same lines, tracks and written frames as one frame per
call, with and without --vid-stride. Batches run here on ONNX Runtime with the batch size forced, since the machine
has no GPU; calls in flight run for real on OpenVINO with the options `detector predict` uses for a clip."""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import cv2
import pytest

from cli.commands import predict
from detector.config import OpenVinoConfig
from detector.runtime import BackendOptions, Detector, video_detect


def _run(
    det: Detector,
    clip: Path,
    out: Path,
    per_call: int,
    stride: int,
    monkeypatch: pytest.MonkeyPatch,
    in_flight: int = 1,
) -> tuple:  # type: ignore[type-arg]
    monkeypatch.setattr(video_detect, "frames_per_call", lambda _det: per_call)
    monkeypatch.setattr(video_detect, "calls_in_flight", lambda _det: in_flight)
    name = f"{per_call}-{in_flight}-{stride}"
    args = argparse.Namespace(
        track=True, vid_stride=stride, save=out / f"{name}.mp4", jsonl=out / f"{name}.jsonl",
        classes=None, conf=0.1, iou=0.7, max_det=300, conf_per_class=None, no_progress=True,
    )  # fmt: skip
    summary = predict._predict_video(det, clip, args)
    lines = [json.loads(line) for line in args.jsonl.read_text().splitlines()]
    cap = cv2.VideoCapture(str(args.save))
    written = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    return summary["frames"], summary["processed_frames"], written, lines


@pytest.mark.parametrize("stride", [1, 3])
def test_batched_frames_answer_as_one_at_a_time(
    model_path: Path, dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stride: int
) -> None:
    from benchmarks.video import generated_clip

    clip = generated_clip(tmp_path / "clip.mp4", dataset_dir, seconds=1)
    with Detector.load(model_path, "onnxruntime") as det:
        one = _run(det, clip, tmp_path, 1, stride, monkeypatch)
        batched = _run(det, clip, tmp_path, 4, stride, monkeypatch)
    _assert_same_answers(one, batched, stride)


def _assert_same_answers(one: tuple, other: tuple, stride: int) -> None:  # type: ignore[type-arg]
    assert one[:3] == other[:3] == (30, len(range(0, 30, stride)), 30)
    assert [line["frame"] for line in one[3]] == [line["frame"] for line in other[3]] == list(range(0, 30, stride))
    assert sum(len(line["detections"]) for line in one[3]) > 0
    for a, b in zip(one[3], other[3], strict=True):
        assert [d["track_id"] for d in a["detections"]] == [d["track_id"] for d in b["detections"]]
        assert [d["class_name"] for d in a["detections"]] == [d["class_name"] for d in b["detections"]]
        for da, db in zip(a["detections"], b["detections"], strict=True):
            assert da["box"] == pytest.approx(db["box"], abs=1e-3)


@pytest.mark.parametrize("stride", [1, 3])
def test_frames_in_flight_on_throughput_streams_answer_as_one_at_a_time(
    model_path: Path, dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stride: int
) -> None:
    from benchmarks.video import generated_clip

    clip = generated_clip(tmp_path / "clip.mp4", dataset_dir, seconds=1)
    # What `detector predict clip.mp4` loads with configs/inference.yaml's `hint: auto` (threads 2: streams to split)
    options = BackendOptions(device="cpu", threads=2, openvino=OpenVinoConfig(hint="auto")).for_clip()
    with Detector.load(model_path, "openvino", options) as det:
        backend = det.backend
        in_flight = video_detect.calls_in_flight(det)
        assert in_flight == backend.slots >= 2
        one = _run(det, clip, tmp_path, 1, stride, monkeypatch)
        (shape,) = backend.cached_shapes  # type: ignore[attr-defined]
        streams = backend.compiled_for(shape)  # type: ignore[attr-defined]
        assert str(streams.compiled.get_property("PERFORMANCE_HINT")).upper() == "THROUGHPUT"
        used = streams.requests
        overlapped = _run(det, clip, tmp_path, 1, stride, monkeypatch, in_flight=in_flight)
        # The overlapped calls ran on the pool's threads (each makes its own infer request; how many threads the pool
        # starts depends on how fast frames arrive, so not a count).
        assert streams.requests > used
    _assert_same_answers(one, overlapped, stride)


@pytest.mark.parametrize("stride", [1, 3])
def test_frames_switching_between_streams_and_one_thread_answer_as_one_at_a_time(
    model_path: Path, dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stride: int
) -> None:
    """A clip timed two ways (`_Ways`): frames on the streams and frames one at a time on the one-thread twin, the
    way switching every few frames here (rounds of 1 + 2 frames, kept for 3), give the lines, tracks and written
    frames of one frame at a time on one way."""
    from benchmarks.video import generated_clip

    clip = generated_clip(tmp_path / "clip.mp4", dataset_dir, seconds=1)
    options = BackendOptions(device="cpu", threads=2, openvino=OpenVinoConfig(hint="auto")).for_clip()
    with Detector.load(model_path, "openvino", options) as det:
        in_flight = video_detect.calls_in_flight(det)
        one = _run(det, clip, tmp_path, 1, stride, monkeypatch)
        twin = det.one_thread()
        assert twin is not None
        by_twin: list[int] = []
        predict_batch = twin.predict_batch
        twin.predict_batch = lambda frames, **kw: (by_twin.append(len(frames)), predict_batch(frames, **kw))[-1]  # type: ignore[method-assign]
        monkeypatch.setattr(video_detect, "PACE_FROM_FRAMES", 1)
        fast = functools.partial(video_detect.FastestOf, settle=1, trial=2, passes=2, give_up=0.0, keep=3, keep_most=3)
        monkeypatch.setattr(video_detect, "FastestOf", fast)
        switching = _run(det, clip, tmp_path, 1, stride, monkeypatch, in_flight=in_flight)
    detected = len(range(0, 30, stride))
    assert 0 < sum(by_twin) < detected  # both ways ran frames of this clip
    _assert_same_answers(one, switching, stride)
